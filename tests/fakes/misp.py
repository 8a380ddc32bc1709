"""A stateful fake MISP: a real HTTP server on loopback answering what PyMISP asks.

It serves the calls the event fixer makes through PyMISP (connection checks, event,
attribute and object searches, event edits, tags, sightings, correlation exclusions)
with MISP's response shapes, checks the `Authorization` header, logs every write, and
can go down after a number of requests (the connection drops, then it refuses) and come
back with its data intact. `generate_event` builds events of any size with a realistic
mix of indicators; real MISP events (PyMISP's fixtures) can be loaded as they are.

The edit semantics follow MISP's: an attribute or object whose timestamp is not newer
than the stored one is skipped silently, an object's attribute sent at the top level of
the event is dropped, an event edit without `published` unpublishes the event.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

DEFAULT_KEY = "fakemispkey0123456789abcdefghijklmnopqrstu"
HOST_ORG = {"id": "1", "name": "ORGNAME", "uuid": "57586e9a-4a64-4f79-9009-4dc1c0a83866"}
MISP_VERSION = "2.5.17"
_EDITABLE = ("to_ids", "disable_correlation", "comment", "category", "distribution", "deleted")
_ATTRIBUTE_EVENT_FIELDS = ("org_id", "distribution", "id", "info", "orgc_id", "uuid")


@dataclass
class WriteCall:
    """One request that changes MISP's data."""

    method: str
    path: str
    body: Any


@dataclass
class _State:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    attribute_ids: dict[str, str] = field(default_factory=dict)  # uuid -> id
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    object_ids: dict[str, str] = field(default_factory=dict)  # uuid -> id
    event_attributes: dict[str, list[str]] = field(default_factory=dict)
    event_objects: dict[str, list[str]] = field(default_factory=dict)
    object_attributes: dict[str, list[str]] = field(default_factory=dict)
    sightings: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    exclusions: list[dict[str, Any]] = field(default_factory=list)
    next_id: dict[str, int] = field(default_factory=dict)

    def new_id(self, kind: str) -> str:
        self.next_id[kind] = self.next_id.get(kind, 0) + 1
        return str(self.next_id[kind])


class _Reply(Exception):
    """Stop handling and answer with this status and body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class FakeMisp:
    """The fake server and its data; use as a context manager or start()/stop()."""

    def __init__(self, *, key: str = DEFAULT_KEY, org: Mapping[str, str] = HOST_ORG) -> None:
        self.key = key
        self.org = dict(org)
        self.writes: list[WriteCall] = []
        self.requests = 0
        self._state = _State()
        self._lock = threading.RLock()
        self._budget: int | None = None
        self._count_writes_only = False
        self._closing: threading.Thread | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> FakeMisp:
        """Listen on loopback (the same port again after a restart)."""
        handler = type("Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", self._port), handler, bind_and_activate=False)
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.server_bind()
        server.server_activate()
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: new connections are refused."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            _close(server)
        if self._closing is not None:
            self._closing.join(timeout=10)

    def restart(self) -> None:
        """Come back up on the same port with the same data and an unlimited budget."""
        self.stop()
        self._budget = None
        self.start()

    def go_down_after(self, requests: int, *, writes_only: bool = False) -> None:
        """Serve `requests` more requests (or writes), then drop connections and stop."""
        with self._lock:
            self._budget, self._count_writes_only = requests, writes_only

    def __enter__(self) -> FakeMisp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- data ------------------------------------------------------------------------

    def add_event(self, document: Mapping[str, Any]) -> str:
        """Store an event given as MISP JSON (`{"Event": …}` or bare); return its id."""
        with self._lock:
            return _store_event(self._state, copy.deepcopy(dict(document.get("Event", document))))

    def load_event(self, path: Path, *, shift_to: float | None = None) -> str:
        """Store a real MISP event file; `shift_to` moves its newest timestamp to that time."""
        document = json.loads(path.read_text(encoding="utf-8"))
        event = dict(document.get("Event", document))
        if shift_to is not None:
            _shift_timestamps(event, shift_to)
        return self.add_event(event)

    def event(self, event_id: str) -> dict[str, Any]:
        """Return the event as `events/view` shows it (live attributes only)."""
        with self._lock:
            return copy.deepcopy(_full_event(self._state, event_id, sightings=True))

    def attribute(self, attribute_uuid: str) -> dict[str, Any]:
        """Return one attribute (deleted ones too) with its tags and sightings."""
        with self._lock:
            state = self._state
            found = state.attributes[state.attribute_ids[attribute_uuid]]
            return copy.deepcopy({**found, "Sighting": state.sightings.get(found["id"], [])})

    def attributes(self, event_id: str, *, deleted: bool = False) -> list[dict[str, Any]]:
        """Return the event's attributes, objects' included."""
        with self._lock:
            state = self._state
            found = [state.attributes[i] for i in state.event_attributes[event_id]]
            return copy.deepcopy([a for a in found if deleted or not a["deleted"]])

    def exclusions(self) -> list[str]:
        with self._lock:
            return [row["value"] for row in self._state.exclusions]

    def write_paths(self) -> list[str]:
        """Return the paths of the write calls, in order."""
        return [call.path for call in self.writes]

    # --- request handling ------------------------------------------------------------

    def _admit(self, method: str, path: str) -> bool:
        """Count a request; return False when the fake has gone down."""
        with self._lock:
            if self._budget is not None:
                if self._budget <= 0:
                    if self._server is not None:
                        server, self._server = self._server, None
                        self._closing = threading.Thread(target=_close, args=(server,))
                        self._closing.start()
                    return False
                if _is_write(method, path) or not self._count_writes_only:
                    self._budget -= 1
            self.requests += 1
            return True

    def _handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        for verb, pattern, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match and method in verb:
                with self._lock:
                    if _is_write(method, path):
                        self.writes.append(WriteCall(method, path, body))
                    return 200, action(self, body, *match.groups())
        raise _Reply(404, _error(path, "Not Found"))

    # --- endpoints -------------------------------------------------------------------

    def _version(self, body: Any) -> Any:
        from pymisp import __version__ as pymisp_version

        return {
            "version": MISP_VERSION,
            "pymisp_recommended_version": pymisp_version,
            "perm_sync": False,
            "perm_sighting": True,
            "perm_galaxy_editor": True,
            "request_encoding": ["gzip"],
            "filter_sightings": True,
        }

    def _me(self, body: Any) -> Any:
        return {
            "User": {
                "id": "1",
                "org_id": self.org["id"],
                "email": "admin@admin.test",
                "role_id": "1",
                "disabled": False,
            },
            "Role": {
                "id": "1",
                "name": "admin",
                "perm_add": True,
                "perm_modify": True,
                "perm_modify_org": True,
                "perm_publish": True,
                "perm_sync": False,
                "perm_admin": True,
                "perm_site_admin": True,
                "perm_tagger": True,
                "perm_tag_editor": True,
                "perm_sighting": True,
            },
            "UserSetting": {},
            "Organisation": dict(self.org),
        }

    def _describe_types(self, body: Any) -> Any:
        from pymisp.abstract import describe_types

        return {"result": describe_types}

    def _event_search(self, body: Any) -> Any:
        events = [_meta(self._state, e) for e in self._matching_events(body)]
        if not _misp_true(body.get("metadata")):
            events = [_full_event(self._state, e["id"], sightings=False) for e in events]
        return {"response": [{"Event": event} for event in events]}

    def _attribute_search(self, body: Any) -> Any:
        state = self._state
        wanted = [
            attribute_id
            for event in self._matching_events(body)
            for attribute_id in state.event_attributes[event["id"]]
            if _wanted_deleted(state.attributes[attribute_id], body)
        ]
        rows = [_search_row(state, state.attributes[i], body) for i in _page(wanted, body)]
        return {"response": {"Attribute": rows}}

    def _object_search(self, body: Any) -> Any:
        state = self._state
        wanted = [
            object_id
            for event in self._matching_events(body)
            for object_id in state.event_objects[event["id"]]
            if not state.objects[object_id].get("deleted")
        ]
        rows = [
            {"Object": _object_with_attributes(state, object_id, sightings=False)}
            for object_id in _page(wanted, body)
        ]
        return {"response": rows}

    def _event_view(self, body: Any, event_id: str) -> Any:
        return {"Event": _full_event(self._state, self._event_id(event_id), sightings=True)}

    def _event_edit(self, body: Any, event_ref: str, metadata: str | None) -> Any:
        event_id = self._event_id(event_ref)
        data = body.get("Event", body) if isinstance(body, dict) else {}
        _edit_event(self._state, event_id, data)
        if metadata:
            return {"Event": _meta(self._state, self._state.events[event_id])}
        return {"Event": _full_event(self._state, event_id, sightings=False)}

    def _attribute_edit(self, body: Any, attribute_ref: str) -> Any:
        attribute = self._attribute(attribute_ref)
        data = body.get("Attribute", body) if isinstance(body, dict) else {}
        _edit_attribute(self._state, attribute, data)
        return {"Attribute": _with_tags(attribute)}

    def _attribute_delete(self, body: Any, attribute_ref: str) -> Any:
        attribute = self._attribute(attribute_ref)
        attribute["deleted"] = True
        attribute["timestamp"] = str(int(time.time()))
        return _success("/attributes/delete/" + attribute_ref, "Attribute deleted.")

    def _attach_tag(self, body: Any) -> Any:
        target, name = str(body.get("uuid", "")), str(body.get("tag", ""))
        holder = self._tag_holder(target)
        _attach(self._state, holder, name, local=_misp_true(body.get("local")))
        return _success("/tags/attachTagToObject", f"Global tag {name} successfully attached.")

    def _sighting_add(self, body: Any, attribute_ref: str | None = None) -> Any:
        data = body.get("Sighting", body) if isinstance(body, dict) else {}
        ids = self._sighting_targets(attribute_ref or data.get("id") or data.get("uuid"), data)
        kind = str(data.get("type", "0"))
        if kind not in {"0", "1", "2"}:
            raise _Reply(403, _failure("/sightings/add", "Invalid type."))
        for attribute_id in ids:
            _add_sighting(self._state, attribute_id, kind, str(data.get("source", "")), self.org)
        names = {"0": "sighting", "1": "false-positive", "2": "expiration"}
        return _success("/sightings/add", f"{len(ids)} {names[kind]}s successfuly added.")

    def _exclusion_list(self, body: Any) -> Any:
        return [{"CorrelationExclusion": dict(row)} for row in self._state.exclusions]

    def _exclusion_add(self, body: Any) -> Any:
        data = body.get("CorrelationExclusion", body) if isinstance(body, dict) else {}
        value = str(data.get("value", ""))
        if not value or value in {row["value"] for row in self._state.exclusions}:
            raise _Reply(403, _failure("/correlation_exclusions/add", "Value already excluded."))
        row = {
            "id": self._state.new_id("exclusion"),
            "value": value,
            "from_json": False,
            "comment": str(data.get("comment", "")),
        }
        self._state.exclusions.append(row)
        return {"CorrelationExclusion": dict(row)}

    # --- helpers ---------------------------------------------------------------------

    def _matching_events(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        wanted_ids = _as_set(body.get("eventid"))
        wanted_uuids = _as_set(body.get("uuid"))
        return [
            event
            for event in self._state.events.values()
            if (not wanted_ids or event["id"] in wanted_ids)
            and (not wanted_uuids or event["uuid"] in wanted_uuids)
        ]

    def _event_id(self, ref: str) -> str:
        state = self._state
        if ref in state.events:
            return ref
        for event in state.events.values():
            if event["uuid"] == ref:
                return str(event["id"])
        raise _Reply(404, _error(f"/events/view/{ref}", "Invalid event"))

    def _attribute(self, ref: str) -> dict[str, Any]:
        state = self._state
        attribute_id = ref if ref in state.attributes else state.attribute_ids.get(ref)
        if attribute_id is None:
            raise _Reply(404, _error(f"/attributes/{ref}", "Invalid attribute"))
        return state.attributes[attribute_id]

    def _tag_holder(self, target: str) -> dict[str, Any]:
        state = self._state
        for event in state.events.values():
            if event["uuid"] == target:
                return event
        if target in state.attribute_ids:
            return state.attributes[state.attribute_ids[target]]
        raise _Reply(404, _error("/tags/attachTagToObject", "Invalid target."))

    def _sighting_targets(self, ref: Any, data: Mapping[str, Any]) -> list[str]:
        state = self._state
        if ref:
            parts = str(ref).split("|")
            found = [p for p in parts if p in state.attributes] or [
                state.attribute_ids[p] for p in parts if p in state.attribute_ids
            ]
        else:
            values = {str(v).lower() for v in data.get("values") or [data.get("value")] if v}
            found = [i for i, a in state.attributes.items() if a["value"].lower() in values]
        found = [i for i in found if not state.attributes[i]["deleted"]]
        if not found:
            message = "No valid attributes found that match the criteria."
            raise _Reply(403, _failure("/sightings/add", message))
        return found


class _Server(ThreadingHTTPServer):
    """A threading server whose dropped connections do not print tracebacks."""

    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections dropped on purpose (going down) are not errors here."""


def _close(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


class _Handler(BaseHTTPRequestHandler):
    """Parses requests, checks the key, and writes MISP-shaped JSON answers."""

    fake: FakeMisp
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _serve(self, method: str) -> None:
        body = self._body()
        path = self.path.split("?", 1)[0].rstrip("/")
        if not self.fake._admit(method, path):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            if self.headers.get("Authorization") != self.fake.key:
                raise _Reply(403, _error(path, _AUTH_FAILED))
            status, answer = self.fake._handle("GET" if method == "HEAD" else method, path, body)
        except _Reply as reply:
            status, answer = reply.status, reply.body
        self._answer(status, answer, head=method == "HEAD")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return {}

    def _answer(self, status: int, answer: Any, *, head: bool) -> None:
        payload = orjson.dumps(answer)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if not head:
            self.wfile.write(payload)


_AUTH_FAILED = (
    "Authentication failed. Please make sure you pass the API key of an API enabled user "
    "along in the Authorization header."
)
_Action = Callable[..., Any]
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], _Action]] = [
    (("GET",), re.compile(r"/servers/getVersion(?:\.json)?"), FakeMisp._version),
    (("GET",), re.compile(r"/users/view/me(?:\.json)?"), FakeMisp._me),
    (("GET",), re.compile(r"/attributes/describeTypes\.json"), FakeMisp._describe_types),
    (("POST",), re.compile(r"/events/restSearch", re.I), FakeMisp._event_search),
    (("POST",), re.compile(r"/attributes/restSearch", re.I), FakeMisp._attribute_search),
    (("POST",), re.compile(r"/objects/restSearch", re.I), FakeMisp._object_search),
    (("GET",), re.compile(r"/events/view/([^/]+)"), FakeMisp._event_view),
    (("POST",), re.compile(r"/events/edit/([^/]+)(/metadata:1)?"), FakeMisp._event_edit),
    (("POST",), re.compile(r"/attributes/edit/([^/]+)"), FakeMisp._attribute_edit),
    (("POST",), re.compile(r"/attributes/delete/([^/]+)"), FakeMisp._attribute_delete),
    (("POST",), re.compile(r"/tags/attachTagToObject"), FakeMisp._attach_tag),
    (("POST",), re.compile(r"/sightings/add(?:/([^/]+))?"), FakeMisp._sighting_add),
    (("GET",), re.compile(r"/correlation_exclusions(?:/index)?"), FakeMisp._exclusion_list),
    (("POST",), re.compile(r"/correlation_exclusions/add"), FakeMisp._exclusion_add),
]


# --- storage and MISP semantics ------------------------------------------------------


def _is_write(method: str, path: str) -> bool:
    return method == "POST" and not path.lower().endswith("restsearch")


def _store_event(state: _State, event: dict[str, Any]) -> str:
    now = str(int(time.time()))
    event_id = str(event.get("id") or state.new_id("event"))
    if event_id in state.events:
        event_id = state.new_id("event")
    attributes, objects = event.pop("Attribute", []) or [], event.pop("Object", []) or []
    for name in ("ShadowAttribute", "RelatedEvent", "Galaxy", "EventReport"):
        event.pop(name, None)
    event.update(id=event_id, uuid=str(event.get("uuid") or uuid.uuid4()))
    if any(other["uuid"] == event["uuid"] for other in state.events.values()):
        raise ValueError(f"MISP keeps one event per UUID; {event['uuid']} is stored already")
    event.setdefault("info", "Fake event")
    event.setdefault("timestamp", now)
    event.setdefault("published", False)
    event.setdefault("Orgc", dict(HOST_ORG))
    event.setdefault("Org", dict(event["Orgc"]))
    event["orgc_id"], event["org_id"] = event["Orgc"].get("id", "1"), event["Org"].get("id", "1")
    event["Tag"] = [_known_tag(state, tag) for tag in event.get("Tag") or []]
    state.events[event_id] = event
    state.event_attributes[event_id], state.event_objects[event_id] = [], []
    for attribute in attributes:
        _store_attribute(state, event_id, "0", attribute, now)
    for misp_object in objects:
        _store_object(state, event_id, misp_object, now)
    return event_id


def _store_object(state: _State, event_id: str, misp_object: dict[str, Any], now: str) -> None:
    attributes = misp_object.pop("Attribute", []) or []
    misp_object.pop("ObjectReference", None)
    object_id = str(misp_object.get("id") or state.new_id("object"))
    if object_id in state.objects:
        object_id = state.new_id("object")
    misp_object.update(
        id=object_id, event_id=event_id, uuid=str(misp_object.get("uuid") or uuid.uuid4())
    )
    misp_object.setdefault("timestamp", now)
    misp_object.setdefault("deleted", False)
    state.objects[object_id] = misp_object
    state.object_ids[misp_object["uuid"]] = object_id
    state.event_objects[event_id].append(object_id)
    for attribute in attributes:
        _store_attribute(state, event_id, object_id, attribute, now)


def _store_attribute(
    state: _State, event_id: str, object_id: str, attribute: dict[str, Any], now: str
) -> None:
    attribute_id = str(attribute.get("id") or state.new_id("attribute"))
    if attribute_id in state.attributes:
        attribute_id = state.new_id("attribute")
    sightings = attribute.pop("Sighting", []) or []
    attribute.pop("ShadowAttribute", None)
    attribute.update(id=attribute_id, event_id=event_id, object_id=object_id)
    attribute["uuid"] = str(attribute.get("uuid") or uuid.uuid4())
    attribute["value"] = str(attribute.get("value", ""))
    attribute.setdefault("category", "Network activity")
    attribute.setdefault("comment", "")
    attribute.setdefault("distribution", "5")
    attribute.setdefault("sharing_group_id", "0")
    attribute["timestamp"] = str(attribute.get("timestamp") or now)
    attribute["to_ids"] = bool(attribute.get("to_ids", False))
    attribute["disable_correlation"] = bool(attribute.get("disable_correlation", False))
    attribute["deleted"] = bool(attribute.get("deleted", False))
    attribute["Tag"] = [_known_tag(state, tag) for tag in attribute.get("Tag") or []]
    state.attributes[attribute_id] = attribute
    state.attribute_ids[attribute["uuid"]] = attribute_id
    state.event_attributes[event_id].append(attribute_id)
    if object_id != "0":
        state.object_attributes.setdefault(object_id, []).append(attribute_id)
    state.sightings[attribute_id] = [dict(s, attribute_id=attribute_id) for s in sightings]


def _edit_event(state: _State, event_id: str, data: Mapping[str, Any]) -> None:
    """Apply an `events/edit` body the way MISP does."""
    event = state.events[event_id]
    stamp = data.get("timestamp")
    if stamp is not None and int(stamp) <= int(event["timestamp"]):
        message = "Event could not be saved: Event in the request not newer than the local copy."
        raise _Reply(403, _failure(f"/events/edit/{event_id}", message))
    now = str(int(time.time()))
    event["timestamp"] = str(stamp or now)
    event["published"] = _misp_true(data.get("published"))
    for attribute in data.get("Attribute") or []:
        _edit_event_attribute(state, event_id, "0", attribute, now)
    for misp_object in data.get("Object") or []:
        _edit_event_object(state, event_id, misp_object, now)
    for tag in data.get("Tag") or []:
        _attach(state, event, str(tag.get("name", "")), local=_misp_true(tag.get("local")))


def _edit_event_object(state: _State, event_id: str, data: Mapping[str, Any], now: str) -> None:
    object_id = state.object_ids.get(str(data.get("uuid")))
    if object_id is None or state.objects[object_id]["event_id"] != event_id:
        return
    stored = state.objects[object_id]
    stamp = data.get("timestamp")
    if stamp is not None and int(stamp) <= int(stored["timestamp"]):
        return  # MISP: nothing newer in this object
    stored["timestamp"] = str(stamp or now)
    for attribute in data.get("Attribute") or []:
        _edit_event_attribute(state, event_id, object_id, attribute, now)


def _edit_event_attribute(
    state: _State, event_id: str, object_id: str, data: Mapping[str, Any], now: str
) -> None:
    attribute_id = state.attribute_ids.get(str(data.get("uuid")))
    if attribute_id is None:
        return
    stored = state.attributes[attribute_id]
    if stored["event_id"] != event_id or stored["object_id"] != object_id:
        return  # MISP logs "Duplicate UUID found in attribute" and drops it
    stamp = data.get("timestamp")
    if stamp is not None and int(stamp) <= int(stored["timestamp"]):
        return  # MISP: not newer, nothing to change
    _edit_attribute(state, stored, {**data, "timestamp": str(stamp or now)})


def _edit_attribute(state: _State, stored: dict[str, Any], data: Mapping[str, Any]) -> None:
    for name in _EDITABLE:
        if name in data:
            value = data[name]
            stored[name] = _misp_true(value) if isinstance(stored.get(name), bool) else value
    stored["timestamp"] = str(data.get("timestamp") or int(time.time()))
    for tag in data.get("Tag") or []:
        _attach(state, stored, str(tag.get("name", "")), local=_misp_true(tag.get("local")))


def _attach(state: _State, holder: dict[str, Any], name: str, *, local: bool) -> None:
    if not name:
        raise _Reply(403, _failure("/tags/attachTagToObject", "Invalid tag."))
    if name.lower() not in {t["name"].lower() for t in holder["Tag"]}:
        holder["Tag"].append({**_known_tag(state, {"name": name}), "local": local})


def _known_tag(state: _State, tag: Mapping[str, Any]) -> dict[str, Any]:
    """Return the registry's tag of this name, creating it (as a tag editor would)."""
    name = str(tag.get("name", ""))
    if name not in state.tags:
        state.tags[name] = {
            "id": state.new_id("tag"),
            "name": name,
            "colour": "#0088cc",
            "exportable": True,
            "hide_tag": False,
            "user_id": "0",
        }
    return {**state.tags[name], "local": bool(tag.get("local", False))}


def _add_sighting(
    state: _State, attribute_id: str, kind: str, source: str, org: Mapping[str, str]
) -> None:
    attribute = state.attributes[attribute_id]
    state.sightings[attribute_id].append(
        {
            "id": state.new_id("sighting"),
            "attribute_id": attribute_id,
            "event_id": attribute["event_id"],
            "org_id": org["id"],
            "date_sighting": str(int(time.time())),
            "uuid": str(uuid.uuid4()),
            "source": source,
            "type": kind,
            "attribute_uuid": attribute["uuid"],
            "Organisation": dict(org),
        }
    )


def _meta(state: _State, event: Mapping[str, Any]) -> dict[str, Any]:
    """Return an event's metadata as a `metadata` search shows it."""
    live = [state.attributes[i] for i in state.event_attributes[event["id"]]]
    return {**event, "attribute_count": str(sum(1 for a in live if not a["deleted"]))}


def _full_event(state: _State, event_id: str, *, sightings: bool) -> dict[str, Any]:
    event = dict(state.events[event_id])
    live = [state.attributes[i] for i in state.event_attributes[event_id]]
    event["Attribute"] = [
        _with_tags(a, state if sightings else None)
        for a in live
        if a["object_id"] == "0" and not a["deleted"]
    ]
    event["Object"] = [
        _object_with_attributes(state, object_id, sightings=sightings)
        for object_id in state.event_objects[event_id]
    ]
    event["attribute_count"] = str(sum(1 for a in live if not a["deleted"]))
    return event


def _object_with_attributes(state: _State, object_id: str, *, sightings: bool) -> dict[str, Any]:
    misp_object = dict(state.objects[object_id])
    misp_object["Attribute"] = [
        _with_tags(a, state if sightings else None)
        for i in state.object_attributes.get(object_id, [])
        if not (a := state.attributes[i])["deleted"]
    ]
    return misp_object


def _with_tags(attribute: Mapping[str, Any], state: _State | None = None) -> dict[str, Any]:
    shown = {k: v for k, v in attribute.items() if k != "Tag"}
    if attribute.get("Tag"):
        shown["Tag"] = [dict(tag) for tag in attribute["Tag"]]
    if state is not None:
        shown["Sighting"] = [dict(s) for s in state.sightings.get(attribute["id"], [])]
    return shown


def _search_row(state: _State, attribute: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    """Return an attribute as `attributes/restSearch` shows it."""
    row = _with_tags(attribute, state if _misp_true(body.get("includeSightings")) else None)
    event = state.events[attribute["event_id"]]
    row["Event"] = {name: event.get(name) for name in _ATTRIBUTE_EVENT_FIELDS}
    if attribute["object_id"] != "0":
        misp_object = state.objects[attribute["object_id"]]
        row["Object"] = {
            name: misp_object.get(name) for name in ("id", "distribution", "sharing_group_id")
        }
    return row


def _wanted_deleted(attribute: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    wanted = body.get("deleted")
    if isinstance(wanted, list):
        return True
    return bool(attribute["deleted"]) == _misp_true(wanted)


def _page(rows: list[Any], body: Mapping[str, Any]) -> list[Any]:
    limit, page = body.get("limit"), body.get("page") or 1
    if not limit:
        return rows
    start = (int(page) - 1) * int(limit)
    return rows[start : start + int(limit)]


def _as_set(value: Any) -> set[str]:
    if value is None or value == "":
        return set()
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return {str(value)}


def _misp_true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _error(url: str, message: str) -> dict[str, Any]:
    return {"name": message, "message": message, "url": url}


def _failure(url: str, message: str) -> dict[str, Any]:
    return {"saved": False, "name": message, "message": message, "url": url, "errors": message}


def _success(url: str, message: str) -> dict[str, Any]:
    return {"saved": True, "success": True, "name": message, "message": message, "url": url}


def _shift_timestamps(event: dict[str, Any], newest: float) -> None:
    """Move every timestamp of an event so its newest one lands on `newest`."""
    stamps = [int(a["timestamp"]) for a in _all_attributes(event) if a.get("timestamp")]
    offset = int(newest) - max(stamps, default=int(newest))
    for attribute in _all_attributes(event):
        if attribute.get("timestamp"):
            attribute["timestamp"] = str(int(attribute["timestamp"]) + offset)
    for misp_object in event.get("Object") or []:
        if misp_object.get("timestamp"):
            misp_object["timestamp"] = str(int(misp_object["timestamp"]) + offset)
    event["timestamp"] = str(int(newest))


def _all_attributes(event: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    yield from event.get("Attribute") or []
    for misp_object in event.get("Object") or []:
        yield from misp_object.get("Attribute") or []


# --- event generator -----------------------------------------------------------------

PUBLIC_RESOLVERS = ("8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9", "208.67.222.222")
POPULAR_DOMAINS = ("google.com", "microsoft.com", "amazon.com", "cloudflare.com", "github.com")
_TLDS = ("xyz", "top", "info", "ru", "net")


def generate_event(
    attributes: int,
    *,
    seed: int = 0,
    now: float | None = None,
    tlp_white: bool = True,
    old_share: float = 0.1,
    object_share: float = 0.1,
    org: Mapping[str, str] = HOST_ORG,
) -> dict[str, Any]:
    """Return a MISP event of `attributes` attributes with a realistic mix.

    The mix cycles through public resolvers (8.8.8.8 first), popular domains (some as
    sub-domains),
    random IPs and domains, hashes, URLs, comments and e-mail subjects, with flags that
    are often wrong (IDS off on IPs, correlation on for comments); `old_share` of the
    attributes are a month old and `object_share` sit in file objects.
    """
    rng = random.Random(seed)
    stamp = int(now if now is not None else time.time())
    top: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    index = 0
    while index < attributes:
        attribute = _generated_attribute(rng, index)
        old = index > 0 and rng.random() < old_share  # the first one is always recent
        age = 30 * 86400 if old else rng.randint(0, 3600)
        attribute["timestamp"] = str(stamp - age)
        attribute["uuid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        hashed = attribute["type"] in {"sha256", "md5", "sha1"}
        if hashed and index + 1 < attributes and rng.random() < object_share:
            objects.append(_file_object(rng, attribute, stamp - age))  # a file name and a hash
            index += 2
        else:
            top.append(attribute)
            index += 1
    tags = [{"name": "tlp:white"}] if tlp_white else [{"name": "tlp:amber"}]
    return {
        "Event": {
            "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "info": f"Generated event with {attributes} attributes",
            "date": time.strftime("%Y-%m-%d", time.gmtime(stamp)),
            "threat_level_id": "2",
            "analysis": "1",
            "distribution": "1",
            "published": False,
            "timestamp": str(stamp),
            "Orgc": dict(org),
            "Org": dict(org),
            "Tag": tags,
            "Attribute": top,
            "Object": objects,
        }
    }


def _generated_attribute(rng: random.Random, index: int) -> dict[str, Any]:
    """Return the index-th attribute of the mix (type, value and its flags)."""
    choice = index % 10
    if choice == 0:
        resolver = PUBLIC_RESOLVERS[(index // 10) % len(PUBLIC_RESOLVERS)]
        kind, value = rng.choice(("ip-dst", "ip-src")), resolver
    elif choice == 1:
        domain = rng.choice(POPULAR_DOMAINS)
        kind, value = rng.choice((("domain", domain), ("hostname", f"www.{domain}")))
    elif choice in (2, 3):
        kind, value = rng.choice(("ip-dst", "ip-src", "ip-dst|port")), _random_ip(rng)
        if kind == "ip-dst|port":
            value = f"{value}|{rng.choice((443, 8080, 4444))}"
    elif choice == 4:
        kind, value = "domain", f"{_word(rng)}-{_word(rng)}.{rng.choice(_TLDS)}"
    elif choice in (5, 6):
        kind = rng.choice(("sha256", "md5", "sha1", "filename|sha256"))
        value = _hash(rng, kind)
    elif choice == 7:
        kind, value = "url", f"http://{_word(rng)}.{rng.choice(_TLDS)}/{_word(rng)}.php"
    elif choice == 8:
        kind, value = "comment", f"seen in campaign {_word(rng)} #{index}"
    else:
        kind, value = "email-subject", f"Invoice {rng.randint(1000, 99999)}"
    return {
        "type": kind,
        "category": "Network activity" if kind.startswith(("ip", "domain", "url")) else "Other",
        "value": value,
        "to_ids": rng.random() < 0.4,
        "disable_correlation": rng.random() < 0.2,
        "comment": rng.choice(("", "", "from sandbox report")),
    }


def _file_object(rng: random.Random, hashed: dict[str, Any], stamp: int) -> dict[str, Any]:
    filename = {
        "type": "filename",
        "category": "Payload delivery",
        "value": f"{_word(rng)}.exe",
        "to_ids": False,
        "object_relation": "filename",
        "timestamp": str(stamp),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    hashed = {**hashed, "category": "Payload delivery", "object_relation": hashed["type"]}
    return {
        "name": "file",
        "meta-category": "file",
        "description": "File object describing a file with meta-information",
        "template_uuid": "688c46fb-5edb-40a3-8273-1af7923e2215",
        "template_version": "25",
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "timestamp": str(stamp),
        "distribution": "5",
        "sharing_group_id": "0",
        "comment": "",
        "Attribute": [filename, hashed],
    }


def _random_ip(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            return str(address)


def _hash(rng: random.Random, kind: str) -> str:
    digits = {"md5": 32, "sha1": 40}.get(kind.removeprefix("filename|"), 64)
    value = f"{rng.getrandbits(digits * 4):0{digits}x}"
    return f"{_word(rng)}.dll|{value}" if kind.startswith("filename|") else value


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(5, 10)))
