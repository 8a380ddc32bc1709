"""The fake MISP server: a threading HTTP server on loopback routing what PyMISP asks."""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
from tests.fakes.misp.store import (
    HOST_ORG,
    Reply,
    State,
    add_sighting,
    as_set,
    attach,
    deleted_filter,
    edit_attribute,
    edit_event,
    error,
    failure,
    full_event,
    is_write,
    meta,
    misp_true,
    object_with_attributes,
    page,
    search_row,
    shift_timestamps,
    store_event,
    success,
    with_tags,
)

DEFAULT_KEY = "fakemispkey0123456789abcdefghijklmnopqrstu"
MISP_VERSION = "2.5.17"


@dataclass
class WriteCall:
    """One request that changes MISP's data."""

    method: str
    path: str
    body: Any


class FakeMisp:
    """The fake server and its data; use as a context manager or start()/stop()."""

    def __init__(self, *, key: str = DEFAULT_KEY, org: Mapping[str, str] = HOST_ORG) -> None:
        self.key = key
        self.org = dict(org)
        self.writes: list[WriteCall] = []
        self.requests = 0
        self.calls: list[tuple[str, str]] = []  # (method, path) of every request admitted
        self._state = State()
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
            return store_event(self._state, copy.deepcopy(dict(document.get("Event", document))))

    def load_event(self, path: Path, *, shift_to: float | None = None) -> str:
        """Store a real MISP event file; `shift_to` moves its newest timestamp to that time."""
        document = json.loads(path.read_text(encoding="utf-8"))
        event = dict(document.get("Event", document))
        if shift_to is not None:
            shift_timestamps(event, shift_to)
        return self.add_event(event)

    def event(self, event_id: str) -> dict[str, Any]:
        """Return the event as `events/view` shows it (live attributes only)."""
        with self._lock:
            return copy.deepcopy(full_event(self._state, event_id, sightings=True))

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

    @staticmethod
    def routes() -> list[tuple[tuple[str, ...], re.Pattern[str]]]:
        """Return what the fake serves: the methods and the path pattern of each route."""
        return [(methods, pattern) for methods, pattern, _ in _ROUTES]

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
                if is_write(method, path) or not self._count_writes_only:
                    self._budget -= 1
            self.requests += 1
            self.calls.append((method, path))
            return True

    def _handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        for verb, pattern, action in _ROUTES:
            match = pattern.fullmatch(path)
            if match and method in verb:
                with self._lock:
                    if is_write(method, path):
                        self.writes.append(WriteCall(method, path, body))
                    return 200, action(self, body, *match.groups())
        raise Reply(404, error(path, "Not Found"))

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
        events = [meta(self._state, e) for e in self._matching_events(body)]
        if not misp_true(body.get("metadata")):
            events = [full_event(self._state, e["id"], sightings=False) for e in events]
        return {"response": [{"Event": event} for event in events]}

    def _attribute_search(self, body: Any) -> Any:
        state = self._state
        filters = orjson.dumps([body.get(name) for name in ("eventid", "uuid", "deleted")])

        def matching() -> list[str]:
            deleted = deleted_filter(body)
            return [
                attribute_id
                for event in self._matching_events(body)
                for attribute_id in state.event_attributes[event["id"]]
                if deleted is None or state.attributes[attribute_id]["deleted"] == deleted
            ]

        wanted = state.remembered(("attributes", filters), matching)
        rows = [search_row(state, state.attributes[i], body) for i in page(wanted, body)]
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
            {"Object": object_with_attributes(state, object_id, sightings=False)}
            for object_id in page(wanted, body)
        ]
        return {"response": rows}

    def _event_view(self, body: Any, event_id: str) -> Any:
        return {"Event": full_event(self._state, self._event_id(event_id), sightings=True)}

    def _event_edit(self, body: Any, event_ref: str, metadata: str | None) -> Any:
        event_id = self._event_id(event_ref)
        data = body.get("Event", body) if isinstance(body, dict) else {}
        edit_event(self._state, event_id, data)
        if metadata:
            return {"Event": meta(self._state, self._state.events[event_id])}
        return {"Event": full_event(self._state, event_id, sightings=False)}

    def _attribute_edit(self, body: Any, attribute_ref: str) -> Any:
        attribute = self._attribute(attribute_ref)
        data = body.get("Attribute", body) if isinstance(body, dict) else {}
        edit_attribute(self._state, attribute, data)
        return {"Attribute": with_tags(attribute)}

    def _attribute_delete(self, body: Any, attribute_ref: str) -> Any:
        attribute = self._attribute(attribute_ref)
        attribute["deleted"] = True
        attribute["timestamp"] = str(int(time.time()))
        self._state.membership_changed()
        return success("/attributes/delete/" + attribute_ref, "Attribute deleted.")

    def _attach_tag(self, body: Any) -> Any:
        target, name = str(body.get("uuid", "")), str(body.get("tag", ""))
        holder = self._tag_holder(target)
        attach(self._state, holder, name, local=misp_true(body.get("local")))
        return success("/tags/attachTagToObject", f"Global tag {name} successfully attached.")

    def _sighting_add(self, body: Any, attribute_ref: str | None = None) -> Any:
        data = body.get("Sighting", body) if isinstance(body, dict) else {}
        ids = self._sighting_targets(attribute_ref or data.get("id") or data.get("uuid"), data)
        kind = str(data.get("type", "0"))
        if kind not in {"0", "1", "2"}:
            raise Reply(403, failure("/sightings/add", "Invalid type."))
        for attribute_id in ids:
            add_sighting(self._state, attribute_id, kind, str(data.get("source", "")), self.org)
        names = {"0": "sighting", "1": "false-positive", "2": "expiration"}
        return success("/sightings/add", f"{len(ids)} {names[kind]}s successfuly added.")

    def _exclusion_list(self, body: Any) -> Any:
        return [{"CorrelationExclusion": dict(row)} for row in self._state.exclusions]

    def _exclusion_add(self, body: Any) -> Any:
        data = body.get("CorrelationExclusion", body) if isinstance(body, dict) else {}
        value = str(data.get("value", ""))
        if not value or value in {row["value"] for row in self._state.exclusions}:
            raise Reply(403, failure("/correlation_exclusions/add", "Value already excluded."))
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
        wanted_ids = as_set(body.get("eventid"))
        wanted_uuids = as_set(body.get("uuid"))
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
        raise Reply(404, error(f"/events/view/{ref}", "Invalid event"))

    def _attribute(self, ref: str) -> dict[str, Any]:
        state = self._state
        attribute_id = ref if ref in state.attributes else state.attribute_ids.get(ref)
        if attribute_id is None:
            raise Reply(404, error(f"/attributes/{ref}", "Invalid attribute"))
        return state.attributes[attribute_id]

    def _tag_holder(self, target: str) -> dict[str, Any]:
        state = self._state
        for event in state.events.values():
            if event["uuid"] == target:
                return event
        if target in state.attribute_ids:
            return state.attributes[state.attribute_ids[target]]
        raise Reply(404, error("/tags/attachTagToObject", "Invalid target."))

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
            raise Reply(403, failure("/sightings/add", message))
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

    def setup(self) -> None:
        """Send each answer at once, as MISP's web servers do (nginx: `tcp_nodelay on`).

        The handler writes the headers and the body separately: with Nagle's algorithm
        on, the body waits for the client's delayed ACK of the headers, about 40 ms a
        request on Linux loopback, which MISP itself does not cost.
        """
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

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
                raise Reply(403, error(path, _AUTH_FAILED))
            status, answer = self.fake._handle("GET" if method == "HEAD" else method, path, body)
        except Reply as reply:
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
