"""The fake MISP's data and MISP's rules for changing it: storage, edits, tags, sightings,
and the shapes MISP answers with."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

_T = TypeVar("_T")

HOST_ORG = {"id": "1", "name": "ORGNAME", "uuid": "57586e9a-4a64-4f79-9009-4dc1c0a83866"}
EDITABLE = ("to_ids", "disable_correlation", "comment", "category", "distribution", "deleted")
ATTRIBUTE_EVENT_FIELDS = ("org_id", "distribution", "id", "info", "orgc_id", "uuid")


@dataclass
class State:
    """Everything the fake MISP stores, indexed the ways its endpoints look things up."""

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
    # What MISP's database answers from its indexes and counter columns (the live
    # attributes of a search, an event's attribute_count), kept until an attribute is
    # added or (un)deleted, so paging through an event costs a page, not the whole event.
    memo: dict[Any, Any] = field(default_factory=dict)

    def new_id(self, kind: str) -> str:
        self.next_id[kind] = self.next_id.get(kind, 0) + 1
        return str(self.next_id[kind])

    def remembered(self, key: Any, compute: Callable[[], _T]) -> _T:
        """Return the remembered answer for `key`, computing it when the data changed."""
        if key not in self.memo:
            self.memo[key] = compute()
        return cast(_T, self.memo[key])

    def membership_changed(self) -> None:
        """Forget what depends on which attributes exist and which are deleted."""
        self.memo.clear()


class Reply(Exception):
    """Stop handling and answer with this status and body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def is_write(method: str, path: str) -> bool:
    return method == "POST" and not path.lower().endswith("restsearch")


def store_event(state: State, event: dict[str, Any]) -> str:
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
    event["Tag"] = [known_tag(state, tag) for tag in event.get("Tag") or []]
    state.membership_changed()
    state.events[event_id] = event
    state.event_attributes[event_id], state.event_objects[event_id] = [], []
    for attribute in attributes:
        _store_attribute(state, event_id, "0", attribute, now)
    for misp_object in objects:
        _store_object(state, event_id, misp_object, now)
    return event_id


def _store_object(state: State, event_id: str, misp_object: dict[str, Any], now: str) -> None:
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
    state: State, event_id: str, object_id: str, attribute: dict[str, Any], now: str
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
    attribute["Tag"] = [known_tag(state, tag) for tag in attribute.get("Tag") or []]
    state.membership_changed()
    state.attributes[attribute_id] = attribute
    state.attribute_ids[attribute["uuid"]] = attribute_id
    state.event_attributes[event_id].append(attribute_id)
    if object_id != "0":
        state.object_attributes.setdefault(object_id, []).append(attribute_id)
    state.sightings[attribute_id] = [dict(s, attribute_id=attribute_id) for s in sightings]


def edit_event(state: State, event_id: str, data: Mapping[str, Any]) -> None:
    """Apply an `events/edit` body the way MISP does."""
    event = state.events[event_id]
    stamp = data.get("timestamp")
    if stamp is not None and int(stamp) <= int(event["timestamp"]):
        message = "Event could not be saved: Event in the request not newer than the local copy."
        raise Reply(403, failure(f"/events/edit/{event_id}", message))
    now = str(int(time.time()))
    event["timestamp"] = str(stamp or now)
    event["published"] = misp_true(data.get("published"))
    for attribute in data.get("Attribute") or []:
        _edit_event_attribute(state, event_id, "0", attribute, now)
    for misp_object in data.get("Object") or []:
        _edit_event_object(state, event_id, misp_object, now)
    for tag in data.get("Tag") or []:
        attach(state, event, str(tag.get("name", "")), local=misp_true(tag.get("local")))


def _edit_event_object(state: State, event_id: str, data: Mapping[str, Any], now: str) -> None:
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
    state: State, event_id: str, object_id: str, data: Mapping[str, Any], now: str
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
    edit_attribute(state, stored, {**data, "timestamp": str(stamp or now)})


def edit_attribute(state: State, stored: dict[str, Any], data: Mapping[str, Any]) -> None:
    was_deleted = stored["deleted"]
    for name in EDITABLE:
        if name in data:
            value = data[name]
            stored[name] = misp_true(value) if isinstance(stored.get(name), bool) else value
    if stored["deleted"] != was_deleted:
        state.membership_changed()
    stored["timestamp"] = str(data.get("timestamp") or int(time.time()))
    for tag in data.get("Tag") or []:
        attach(state, stored, str(tag.get("name", "")), local=misp_true(tag.get("local")))


def attach(state: State, holder: dict[str, Any], name: str, *, local: bool) -> None:
    if not name:
        raise Reply(403, failure("/tags/attachTagToObject", "Invalid tag."))
    if name.lower() not in {t["name"].lower() for t in holder["Tag"]}:
        holder["Tag"].append({**known_tag(state, {"name": name}), "local": local})


def known_tag(state: State, tag: Mapping[str, Any]) -> dict[str, Any]:
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


def add_sighting(
    state: State, attribute_id: str, kind: str, source: str, org: Mapping[str, str]
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


def meta(state: State, event: Mapping[str, Any]) -> dict[str, Any]:
    """Return an event's metadata as a `metadata` search shows it."""
    return {**event, "attribute_count": str(live_count(state, str(event["id"])))}


def live_count(state: State, event_id: str) -> int:
    """Return the number of live attributes of an event (MISP's `attribute_count`)."""

    def count() -> int:
        attributes = state.attributes
        return sum(1 for i in state.event_attributes[event_id] if not attributes[i]["deleted"])

    return state.remembered(("attribute_count", event_id), count)


def full_event(state: State, event_id: str, *, sightings: bool) -> dict[str, Any]:
    event = dict(state.events[event_id])
    live = [state.attributes[i] for i in state.event_attributes[event_id]]
    event["Attribute"] = [
        with_tags(a, state if sightings else None)
        for a in live
        if a["object_id"] == "0" and not a["deleted"]
    ]
    event["Object"] = [
        object_with_attributes(state, object_id, sightings=sightings)
        for object_id in state.event_objects[event_id]
    ]
    event["attribute_count"] = str(live_count(state, event_id))
    return event


def object_with_attributes(state: State, object_id: str, *, sightings: bool) -> dict[str, Any]:
    misp_object = dict(state.objects[object_id])
    misp_object["Attribute"] = [
        with_tags(a, state if sightings else None)
        for i in state.object_attributes.get(object_id, [])
        if not (a := state.attributes[i])["deleted"]
    ]
    return misp_object


def with_tags(attribute: Mapping[str, Any], state: State | None = None) -> dict[str, Any]:
    shown = {k: v for k, v in attribute.items() if k != "Tag"}
    if attribute.get("Tag"):
        shown["Tag"] = [dict(tag) for tag in attribute["Tag"]]
    if state is not None:
        shown["Sighting"] = [dict(s) for s in state.sightings.get(attribute["id"], [])]
    return shown


def search_row(state: State, attribute: Mapping[str, Any], body: Mapping[str, Any]) -> Any:
    """Return an attribute as `attributes/restSearch` shows it."""
    row = with_tags(attribute, state if misp_true(body.get("includeSightings")) else None)
    event = state.events[attribute["event_id"]]
    row["Event"] = {name: event.get(name) for name in ATTRIBUTE_EVENT_FIELDS}
    if attribute["object_id"] != "0":
        misp_object = state.objects[attribute["object_id"]]
        row["Object"] = {
            name: misp_object.get(name) for name in ("id", "distribution", "sharing_group_id")
        }
    return row


def deleted_filter(body: Mapping[str, Any]) -> bool | None:
    """Return which attributes a search's `deleted` asks for: live, deleted, or None (both)."""
    wanted = body.get("deleted")
    return None if isinstance(wanted, list) else misp_true(wanted)


def page(rows: list[Any], body: Mapping[str, Any]) -> list[Any]:
    limit, page = body.get("limit"), body.get("page") or 1
    if not limit:
        return rows
    start = (int(page) - 1) * int(limit)
    return rows[start : start + int(limit)]


def as_set(value: Any) -> set[str]:
    if value is None or value == "":
        return set()
    if isinstance(value, (list, tuple)):
        return {str(v) for v in value}
    return {str(value)}


def misp_true(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def error(url: str, message: str) -> dict[str, Any]:
    return {"name": message, "message": message, "url": url}


def failure(url: str, message: str) -> dict[str, Any]:
    return {"saved": False, "name": message, "message": message, "url": url, "errors": message}


def success(url: str, message: str) -> dict[str, Any]:
    return {"saved": True, "success": True, "name": message, "message": message, "url": url}


def shift_timestamps(event: dict[str, Any], newest: float) -> None:
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
