"""Turn a fetched MISP event and the false-positive verdicts into the changes to make (pure).

Nothing here talks to MISP: the functions take the event as MISP's JSON gave it, the
verdicts and the settings, and return what should change (`edits` turns that into
request bodies). Running the planner on an event it already fixed yields an empty
plan, which is what makes a second run a no-op.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from puffin.intel.misp_fixer.settings import FixerSettings

# Attribute types whose values are judged for false positives (the classifier ignores others).
CLASSIFIED_TYPES = frozenset(
    {
        "ip-src",
        "ip-dst",
        "ip-src|port",
        "ip-dst|port",
        "domain|ip",
        "domain",
        "hostname",
        "sha256",
        "filename|sha256",
        "md5",
        "sha1",
        "filename|md5",
        "filename|sha1",
    }
)
FALSE_POSITIVE_SIGHTING = "1"
TLP_WHITE, TLP_CLEAR = "tlp:white", "tlp:clear"
TOP_LEVEL = "0"


class VerdictLike(Protocol):
    """What the planner reads from a classifier verdict."""

    @property
    def source(self) -> str: ...

    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class EventSnapshot:
    """An event as fetched: its metadata and every live attribute, objects' included."""

    id: str
    uuid: str
    info: str
    org_name: str
    org_uuid: str
    tags: tuple[str, ...]
    attributes: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Decision:
    """A false-positive verdict on one attribute and what is done about it."""

    attribute_uuid: str
    type: str
    value: str
    source: str
    detail: str
    action: str


@dataclass(frozen=True, slots=True)
class Change:
    """One change to MISP: `kind` on `target` (an attribute or event UUID, or a value)."""

    kind: str
    target: str
    new_value: str
    attribute_type: str = ""
    attribute_value: str = ""


@dataclass(frozen=True, slots=True)
class AttributeChange:
    """Everything that changes on one attribute, applied in one edit."""

    attribute: Mapping[str, Any]
    to_ids: bool | None = None
    disable_correlation: bool | None = None
    add_tag: str | None = None
    delete: bool = False
    object_id: str = field(init=False)  # the attribute's object, TOP_LEVEL when none
    _changes: tuple[Change, ...] | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_id", str(self.attribute.get("object_id") or TOP_LEVEL))

    def changes(self) -> list[Change]:
        """Return the individual changes, for reports (the plan's and the applied ones)."""
        if self._changes is None:
            object.__setattr__(self, "_changes", tuple(self._individual_changes()))
        return list(self._changes or ())

    def _individual_changes(self) -> list[Change]:
        attribute = self.attribute
        uuid, kind_of, value = (
            str(attribute["uuid"]),
            str(attribute["type"]),
            str(attribute["value"]),
        )
        found: list[Change] = []
        if self.delete:
            found.append(Change("delete", uuid, "soft", kind_of, value))
        if self.to_ids is not None:
            found.append(Change("to_ids", uuid, _text(self.to_ids), kind_of, value))
        if self.disable_correlation is not None:
            new = _text(self.disable_correlation)
            found.append(Change("disable_correlation", uuid, new, kind_of, value))
        if self.add_tag is not None:
            found.append(Change("tag", uuid, self.add_tag, kind_of, value))
        return found


@dataclass(frozen=True)
class Plan:
    """The changes one run makes to one event."""

    event_id: str
    event_uuid: str
    decisions: tuple[Decision, ...] = ()
    attribute_changes: tuple[AttributeChange, ...] = ()
    sightings: tuple[Mapping[str, Any], ...] = ()
    event_tags: tuple[str, ...] = ()
    correlation_exclusions: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (
            self.attribute_changes
            or self.sightings
            or self.event_tags
            or self.correlation_exclusions
        )

    @property
    def touches_objects(self) -> bool:
        return any(change.object_id != TOP_LEVEL for change in self.attribute_changes)

    def changes(self) -> list[Change]:
        """Return every planned change, attribute edits first."""
        found = [c for change in self.attribute_changes for c in change.changes()]
        found += sighting_changes(self.sightings)
        found += [Change("event_tag", self.event_uuid, tag) for tag in self.event_tags]
        found += [Change("correlation_exclusion", v, "added") for v in self.correlation_exclusions]
        return found


def skip_reason(snapshot: EventSnapshot, settings: FixerSettings) -> str | None:
    """Return why the event is left alone (its creator organisation is skipped), or None."""
    skipped = {name.strip().lower() for name in settings.skip_orgs}
    for label in (snapshot.org_name, snapshot.org_uuid):
        if label and label.lower() in skipped:
            return f"organisation {snapshot.org_name or snapshot.org_uuid} is in skip_orgs"
    return None


def candidates(
    snapshot: EventSnapshot, *, settings: FixerSettings, now: datetime
) -> list[tuple[str, str]]:
    """Return the distinct (type, value) pairs to classify, in the event's order."""
    since = _window_start(settings, now)
    seen: dict[tuple[str, str], None] = {}
    for attribute in snapshot.attributes:
        if _judged(attribute, since, settings):
            seen[(str(attribute["type"]), str(attribute["value"]))] = None
    return list(seen)


def build_plan(
    snapshot: EventSnapshot,
    *,
    verdicts: Mapping[tuple[str, str], VerdictLike],
    settings: FixerSettings,
    now: datetime,
    existing_exclusions: frozenset[str] = frozenset(),
) -> Plan:
    """Return the changes that bring the event to the fixed state."""
    since = _window_start(settings, now)
    decisions: list[Decision] = []
    changes: list[AttributeChange] = []
    sightings: list[Mapping[str, Any]] = []
    excluded: dict[str, None] = {}
    for attribute in snapshot.attributes:
        judged = _judged(attribute, since, settings)
        verdict = verdicts.get(_key(attribute)) if judged else None
        if verdict is not None:
            decisions.append(_decision(attribute, verdict, settings.action))
            excluded.update(dict.fromkeys(exclusion_values(attribute)))
        change = _attribute_change(attribute, flagged=verdict is not None, settings=settings)
        if change is not None:
            changes.append(change)
        if verdict is not None and settings.action == "flag" and not _has_fp_sighting(attribute):
            sightings.append(attribute)
    exclusions = [v for v in excluded if v not in existing_exclusions]
    return Plan(
        event_id=snapshot.id,
        event_uuid=snapshot.uuid,
        decisions=tuple(decisions),
        attribute_changes=tuple(changes),
        sightings=tuple(sightings),
        event_tags=_event_tags(snapshot),
        correlation_exclusions=tuple(exclusions) if settings.add_correlation_exclusions else (),
    )


def sighting_changes(attributes: Sequence[Mapping[str, Any]]) -> list[Change]:
    """Return the report lines for false-positive sightings on these attributes."""
    return [
        Change(
            "sighting",
            str(a["uuid"]),
            "false-positive",
            str(a["type"]),
            str(a["value"]),
        )
        for a in attributes
    ]


def exclusion_values(attribute: Mapping[str, Any]) -> list[str]:
    """Return the indicator parts of a value (no ports, no file names) for exclusion."""
    kind, value = str(attribute["type"]), str(attribute["value"])
    if "|" not in kind:
        return [value]
    first, _, second = value.partition("|")
    if kind.endswith("|port"):
        return [first]
    if kind.startswith("filename|"):
        return [second]
    return [part for part in (first, second) if part]


def flag(value: Any) -> bool:
    """Read a MISP boolean, which may come as a bool, a number or a string."""
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def tag_names(attribute: Mapping[str, Any]) -> list[str]:
    """Return the names of an attribute's (or event's) tags."""
    return [str(tag.get("name", "")) for tag in attribute.get("Tag") or ()]


def _attribute_change(
    attribute: Mapping[str, Any], *, flagged: bool, settings: FixerSettings
) -> AttributeChange | None:
    """Return the edit one attribute needs, or None when it is already right."""
    if flagged and settings.action == "delete":
        return AttributeChange(attribute, delete=True)
    to_ids, correlation_off = _wanted_flags(attribute, settings)
    tagged = _has_tag(attribute, settings.false_positive_tag)
    if flagged:
        to_ids = False
    elif tagged:
        to_ids = flag(attribute.get("to_ids"))  # flagged earlier: never switched back on
    change = AttributeChange(
        attribute,
        to_ids=_differs(to_ids, attribute.get("to_ids")),
        disable_correlation=_differs(correlation_off, attribute.get("disable_correlation")),
        add_tag=settings.false_positive_tag if flagged and not tagged else None,
    )
    untouched = change.to_ids is None and change.disable_correlation is None
    return None if untouched and change.add_tag is None else change


def _wanted_flags(attribute: Mapping[str, Any], settings: FixerSettings) -> tuple[bool, bool]:
    """Return (to_ids, disable_correlation) as the type lists want them."""
    kind = str(attribute["type"])
    to_ids, correlation_off = _current_flags(attribute)
    if kind in settings.non_correlating_types:
        correlation_off = True
    if kind in settings.ids_types:
        to_ids, correlation_off = True, False
    return to_ids, correlation_off


def _differs(wanted: bool, current: Any) -> bool | None:
    """Return the wanted value when it differs from the current one, else None."""
    return None if wanted == flag(current) else wanted


def _decision(attribute: Mapping[str, Any], verdict: VerdictLike, action: str) -> Decision:
    return Decision(
        attribute_uuid=str(attribute["uuid"]),
        type=str(attribute["type"]),
        value=str(attribute["value"]),
        source=verdict.source,
        detail=verdict.detail,
        action=action,
    )


def _event_tags(snapshot: EventSnapshot) -> tuple[str, ...]:
    """Return `tlp:clear` when the event is TLP:WHITE and not yet TLP:CLEAR."""
    names = {name.lower() for name in snapshot.tags}
    return (TLP_CLEAR,) if TLP_WHITE in names and TLP_CLEAR not in names else ()


def _judged(attribute: Mapping[str, Any], since: int, settings: FixerSettings) -> bool:
    """Tell whether the attribute is up for classification.

    Its type must be one that is judged, and its timestamp within the look-back window,
    unless this run edits its flags anyway: the edit makes it recent (MISP needs a newer
    timestamp), so judging it now is what keeps the next run from finding it new.
    """
    if str(attribute.get("type")) not in CLASSIFIED_TYPES or flag(attribute.get("deleted")):
        return False
    try:
        recent = int(attribute.get("timestamp") or 0) >= since
    except (TypeError, ValueError):
        recent = False
    return recent or _wanted_flags(attribute, settings) != _current_flags(attribute)


def _current_flags(attribute: Mapping[str, Any]) -> tuple[bool, bool]:
    return flag(attribute.get("to_ids")), flag(attribute.get("disable_correlation"))


def _window_start(settings: FixerSettings, now: datetime) -> int:
    return int((now - timedelta(days=settings.lookback_days)).timestamp())


def _key(attribute: Mapping[str, Any]) -> tuple[str, str]:
    return str(attribute["type"]), str(attribute["value"])


def _has_tag(attribute: Mapping[str, Any], name: str) -> bool:
    return name.lower() in {tag.lower() for tag in tag_names(attribute)}


def _has_fp_sighting(attribute: Mapping[str, Any]) -> bool:
    return any(
        str(sighting.get("type")) == FALSE_POSITIVE_SIGHTING
        for sighting in attribute.get("Sighting") or ()
    )


def _text(value: bool) -> str:
    return "true" if value else "false"
