"""Turn a plan into MISP request bodies: event edits page by page, sightings in batches (pure)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from puffin.intel.misp_fixer.plan import TOP_LEVEL, AttributeChange, Change, Plan, flag

_T = TypeVar("_T")


@dataclass(frozen=True)
class EditPage:
    """One `events/edit` request body and the changes it carries."""

    body: dict[str, Any]
    changes: list[Change] = field(default_factory=list)


def edit_pages(
    plan: Plan,
    *,
    objects: Mapping[str, Mapping[str, Any]],
    now: datetime,
    page_size: int,
) -> list[EditPage]:
    """Return the `events/edit` bodies that apply the attribute changes, page by page.

    Each changed attribute carries a timestamp newer than the one MISP holds (MISP
    silently skips an attribute whose timestamp is not newer), computed from both the
    clock and the stored value so a clock behind MISP's still gets the edit accepted.
    Attributes of objects travel inside their object, whose timestamp is bumped too:
    MISP refuses to move an object's attribute to the top level of the event.
    """
    return [
        _edit_page(plan, chunk, objects=objects, now=now)
        for chunk in _packed(plan.attribute_changes, page_size)
    ]


def sighting_batches(plan: Plan, *, size: int) -> Iterator[list[Mapping[str, Any]]]:
    """Yield the attributes to sight as false positives, `size` at a time."""
    yield from _chunks(list(plan.sightings), size)


def _packed(changes: Sequence[AttributeChange], size: int) -> Iterator[list[AttributeChange]]:
    """Yield pages of about `size` changes, never splitting one object's changes.

    An object sent twice would carry the same bumped timestamp twice, and MISP skips an
    object whose timestamp is not newer than the one it just stored.
    """
    units: dict[str, list[AttributeChange]] = {}
    for position, change in enumerate(changes):
        key = f"object:{change.object_id}" if change.object_id != TOP_LEVEL else str(position)
        units.setdefault(key, []).append(change)
    page: list[AttributeChange] = []
    for unit in units.values():
        if page and len(page) + len(unit) > size:
            yield page
            page = []
        page.extend(unit)
    if page:
        yield page


def _edit_page(
    plan: Plan,
    chunk: list[AttributeChange],
    *,
    objects: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> EditPage:
    """Return one edit body: top-level attributes, then objects with their attributes."""
    top: list[dict[str, Any]] = []
    by_object: dict[str, list[dict[str, Any]]] = {}
    for change in chunk:
        body = _attribute_body(change, now)
        if change.object_id == TOP_LEVEL:
            top.append(body)
        else:
            by_object.setdefault(change.object_id, []).append(body)
    event: dict[str, Any] = {"id": plan.event_id, "uuid": plan.event_uuid, "Attribute": top}
    if by_object:
        event["Object"] = [
            _object_body(objects[object_id], attributes, now)
            for object_id, attributes in by_object.items()
        ]
    return EditPage({"Event": event}, [c for change in chunk for c in change.changes()])


def _attribute_body(change: AttributeChange, now: datetime) -> dict[str, Any]:
    """Return an attribute as the edit sends it: its fields, the new flags, a newer time."""
    current = change.attribute
    body: dict[str, Any] = {
        name: current[name]
        for name in (
            "id",
            "uuid",
            "type",
            "category",
            "value",
            "distribution",
            "sharing_group_id",
            "comment",
            "object_relation",
        )
        if current.get(name) is not None
    }
    body["to_ids"] = change.to_ids if change.to_ids is not None else flag(current.get("to_ids"))
    body["disable_correlation"] = (
        change.disable_correlation
        if change.disable_correlation is not None
        else flag(current.get("disable_correlation"))
    )
    body["timestamp"] = str(_newer(current.get("timestamp"), now))
    if change.add_tag is not None:
        body["Tag"] = [*_kept_tags(current), {"name": change.add_tag}]
    if change.delete:
        body["deleted"] = True
    return body


def _object_body(
    misp_object: Mapping[str, Any], attributes: list[dict[str, Any]], now: datetime
) -> dict[str, Any]:
    """Return an object as the edit sends it, with a newer timestamp and some attributes."""
    body = {
        name: misp_object[name]
        for name in (
            "id",
            "uuid",
            "name",
            "meta-category",
            "template_uuid",
            "template_version",
            "distribution",
            "sharing_group_id",
            "comment",
        )
        if misp_object.get(name) is not None
    }
    body["timestamp"] = str(_newer(misp_object.get("timestamp"), now))
    body["Attribute"] = attributes
    return body


def _kept_tags(attribute: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return the attribute's tags as an edit must repeat them (sync users replace tags)."""
    return [
        {"name": str(tag["name"]), "local": flag(tag.get("local"))}
        for tag in attribute.get("Tag") or ()
        if tag.get("name")
    ]


def _newer(stored: Any, now: datetime) -> int:
    """Return a timestamp later than the stored one and not before now."""
    try:
        previous = int(stored)
    except (TypeError, ValueError):
        previous = 0
    return max(int(now.timestamp()), previous + 1)


def _chunks(items: list[_T], size: int) -> Iterator[list[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
