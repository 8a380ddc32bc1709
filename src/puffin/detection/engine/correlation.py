"""Sigma correlation rules (counts, distinct values, sequences) evaluated over base-rule matches."""

from __future__ import annotations

import heapq
import itertools
import operator
from bisect import bisect_left, bisect_right, insort
from collections import OrderedDict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from sigma.correlations import (
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaRuleReference,
)

from puffin.detection.engine.options import Dedupe, dedupe_of

CorrelationType = Literal["event_count", "value_count", "temporal", "temporal_ordered"]
ThresholdOp = Literal["gt", "gte", "lt", "lte", "eq", "neq"]

MAX_MATCH_EVENTS = 10
"""A match carries at most this many contributing events (the most recent in its window)."""
MAX_TRACKED_EVENTS = 10_000
"""Entries kept per group (and per referenced rule); larger thresholds are refused."""

_TYPES: frozenset[str] = frozenset(get_args(CorrelationType))
_CLOSING_OPS = frozenset({"lt", "lte", "eq", "neq"})
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "neq": operator.ne,
}

_Key = tuple[float, int]  # (timestamp, arrival number): orders events, ties broken by arrival
_KEY_OF = operator.itemgetter(0)  # a sample's key: samples are kept in key order
_GroupValues = tuple[Hashable, ...]
_WindowKey = tuple[int, _GroupValues]  # (correlation index, group-by values)


@dataclass(frozen=True)
class CorrelationMatch:
    """A correlation whose condition held for one group within its timespan."""

    rule_id: str
    title: str
    level: str
    tags: tuple[str, ...]
    group: dict[str, Any]
    count: int
    first_seen: float
    last_seen: float
    events: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class CompiledCorrelation:
    """A Sigma correlation rule reduced to what the windowed state needs (JSON-ready fields)."""

    id: str
    title: str
    type: CorrelationType
    rules: tuple[str, ...]
    timespan_seconds: float
    group_by: tuple[str, ...] = ()
    threshold_op: ThresholdOp = "gte"
    threshold: float = 1
    value_field: str | None = None
    level: str = "medium"
    aliases: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    generate: bool = False
    source: str = ""
    name: str = ""
    tags: tuple[str, ...] = ()
    rule_identifiers: tuple[tuple[str, ...], ...] = ()
    dedupe: Dedupe | None = None  # the correlation's own `puffin: dedupe`, if it has one

    @property
    def closes_window(self) -> bool:
        """Whether the condition is an upper bound, decided only when a window closes."""
        return self.threshold_op in _CLOSING_OPS

    def identifiers(self, position: int) -> frozenset[str]:
        """Return every id and name under which the referenced rule at `position` matches."""
        extra = self.rule_identifiers[position] if self.rule_identifiers else ()
        return frozenset((self.rules[position], *extra))

    def own_identifiers(self) -> frozenset[str]:
        """Return the id and name other correlations may use to refer to this one."""
        return frozenset(item for item in (self.id, self.name) if item)


def compile_correlation(rule: SigmaCorrelationRule) -> CompiledCorrelation:
    """Compile a parsed Sigma correlation rule; raise ValueError saying what is unsupported."""
    if rule.errors:
        raise ValueError(f"{_label(rule)}: invalid correlation: {rule.errors[0]}")
    kind = _supported_type(rule)
    references = list(rule.rules or [])
    op, threshold, value_field = _condition(rule, kind, len(references))
    if not references:
        raise ValueError(f"{_label(rule)}: the correlation lists no rules")
    identifiers = tuple(_resolved_identifiers(reference) for reference in references)
    identity = str(rule.id) if rule.id else (rule.name or "")
    if not identity:
        raise ValueError(f"{_label(rule)}: a correlation needs an id or a name")
    try:
        dedupe = dedupe_of(rule.custom_attributes or {})
    except ValueError as error:
        raise ValueError(f"{_label(rule)}: {error}") from error
    return CompiledCorrelation(
        id=identity,
        title=rule.title,
        type=kind,
        rules=tuple(reference.reference for reference in references),
        timespan_seconds=float(rule.timespan.seconds),
        group_by=tuple(rule.group_by or ()),
        threshold_op=op,
        threshold=threshold,
        value_field=value_field,
        level=str(rule.level) if rule.level else "medium",
        aliases=_aliases(rule, references, identifiers),
        generate=bool(rule.generate),
        source=str(rule.source) if rule.source else "",
        name=rule.name or "",
        tags=tuple(str(tag) for tag in rule.tags),
        rule_identifiers=identifiers,
        dedupe=dedupe,
    )


def _label(rule: SigmaCorrelationRule) -> str:
    where = f" ({rule.source})" if rule.source else ""
    return f"correlation {rule.title or rule.id or rule.name!r}{where}"


def _supported_type(rule: SigmaCorrelationRule) -> CorrelationType:
    kind = str(rule.type)
    if kind not in _TYPES:
        supported = ", ".join(sorted(_TYPES))
        raise ValueError(f"{_label(rule)}: type {kind} is not supported (only {supported})")
    return cast(CorrelationType, kind)


def _condition(
    rule: SigmaCorrelationRule, kind: CorrelationType, rule_count: int
) -> tuple[ThresholdOp, float, str | None]:
    condition = rule.condition
    if not isinstance(condition, SigmaCorrelationCondition):
        raise ValueError(f"{_label(rule)}: extended (boolean) conditions are not supported")
    op = cast(ThresholdOp, condition.op.name.lower())
    threshold = float(condition.count)
    if kind == "temporal_ordered" and (op, threshold) != ("gte", rule_count):
        raise ValueError(f"{_label(rule)}: temporal_ordered needs every rule, in order")
    if kind in ("event_count", "value_count") and threshold >= MAX_TRACKED_EVENTS:
        raise ValueError(f"{_label(rule)}: thresholds from {MAX_TRACKED_EVENTS} are not supported")
    return op, threshold, _value_field(rule, kind, condition.fieldref)


def _value_field(
    rule: SigmaCorrelationRule, kind: CorrelationType, fieldref: str | list[str] | None
) -> str | None:
    if kind != "value_count":
        return None
    fields = [fieldref] if isinstance(fieldref, str) else list(fieldref or [])
    if len(fields) != 1:
        raise ValueError(f"{_label(rule)}: value_count needs exactly one condition field")
    return fields[0]


def _resolved_identifiers(reference: SigmaRuleReference) -> tuple[str, ...]:
    """Return the id and name of the rule a reference resolved to (nothing if unresolved)."""
    target = getattr(reference, "rule", None)
    if target is None:
        return ()
    found = (str(target.id) if target.id else "", target.name or "")
    return tuple(item for item in found if item and item != reference.reference)


def _aliases(
    rule: SigmaCorrelationRule,
    references: Sequence[SigmaRuleReference],
    identifiers: Sequence[tuple[str, ...]],
) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    known = [
        frozenset((ref.reference, *ids)) for ref, ids in zip(references, identifiers, strict=True)
    ]
    compiled = []
    for alias in rule.aliases:
        pairs = []
        for reference, field_name in alias.mapping.items():
            wanted = {reference.reference, *_resolved_identifiers(reference)}
            position = next((i for i, ids in enumerate(known) if ids & wanted), None)
            if position is None:
                message = (
                    f"alias {alias.alias} maps rule {reference.reference}, which is not listed"
                )
                raise ValueError(f"{_label(rule)}: {message}")
            pairs.append((references[position].reference, str(field_name)))
        compiled.append((alias.alias, tuple(pairs)))
    return tuple(compiled)


@dataclass(frozen=True, slots=True)
class _Plan:
    """Per referenced rule: the ids it matches under and the event fields behind each name."""

    identifiers: tuple[frozenset[str], ...]
    group_fields: tuple[tuple[str, ...], ...]
    value_fields: tuple[str | None, ...]


def _plan(correlation: CompiledCorrelation) -> _Plan:
    renames = {alias: dict(pairs) for alias, pairs in correlation.aliases}

    def field_for(name: str, reference: str) -> str:
        return renames.get(name, {}).get(reference, name)

    refs = correlation.rules
    value = correlation.value_field
    return _Plan(
        identifiers=tuple(correlation.identifiers(i) for i in range(len(refs))),
        group_fields=tuple(tuple(field_for(f, r) for f in correlation.group_by) for r in refs),
        value_fields=tuple(field_for(value, r) if value else None for r in refs),
    )


def _hashable(value: Any) -> Hashable | None:
    """Return a value usable as a group or distinct key (lists become tuples), or None."""
    if value.__class__ is str:  # the usual case, checked first
        return value or None
    if isinstance(value, (str, int, float)):
        return value if value != "" else None
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _hashable(v)) for k, v in value.items()))
    return cast(Hashable, value)


def _insert(entries: list[_Key], key: _Key, *, sliding: bool) -> None:
    """Insert in order; when full, a sliding window forgets its oldest, a closing one the new."""
    if len(entries) >= MAX_TRACKED_EVENTS:
        if not sliding:
            return
        del entries[0]
    insort(entries, key)


class _Window:
    """The entries of one (correlation, group) inside its timespan."""

    __slots__ = ("keys", "per_rule", "samples", "serial", "values")

    def __init__(self, serial: int, rule_count: int) -> None:
        self.serial = serial
        self.keys: list[_Key] = []
        self.per_rule: list[list[_Key]] = [[] for _ in range(rule_count)]
        self.values: OrderedDict[Hashable, _Key] = OrderedDict()
        self.samples: list[tuple[_Key, Mapping[str, Any]]] = []

    def add(
        self,
        key: _Key,
        event: Mapping[str, Any],
        rules: Sequence[int],
        value: Hashable | None,
        *,
        sliding: bool,
    ) -> None:
        """Record one event (for these referenced rules, with this distinct value)."""
        _insert(self.keys, key, sliding=sliding)
        for position in rules if self.per_rule else ():
            _insert(self.per_rule[position], key, sliding=sliding)
        if value is not None:
            self._add_value(value, key, sliding=sliding)
        insort(self.samples, (key, event), key=_KEY_OF)
        if len(self.samples) > MAX_MATCH_EVENTS:
            del self.samples[0]

    def _add_value(self, value: Hashable, key: _Key, *, sliding: bool) -> None:
        previous = self.values.get(value)
        if previous is None and len(self.values) >= MAX_TRACKED_EVENTS:
            if not sliding:
                return
            self.values.popitem(last=False)
        self.values[value] = max(previous, key) if previous else key
        self.values.move_to_end(value)

    def expire(self, cutoff: float) -> None:
        """Forget every entry older than `cutoff`."""
        edge = (cutoff, -1)
        del self.keys[: bisect_left(self.keys, edge)]
        for entries in self.per_rule:
            del entries[: bisect_left(entries, edge)]
        while self.values and next(iter(self.values.values())) < edge:
            self.values.popitem(last=False)
        del self.samples[: bisect_left(self.samples, edge, key=_KEY_OF)]

    def deadline(self, correlation: CompiledCorrelation) -> float:
        """Return when this window closes (closing conditions) or has fully expired (others)."""
        anchor = self.keys[0] if correlation.closes_window else self.keys[-1]
        return anchor[0] + correlation.timespan_seconds


def _sequence_start(per_rule: Sequence[list[_Key]]) -> _Key | None:
    """Return the first entry of the earliest in-order sequence of all rules, or None."""
    previous: _Key | None = None
    start: _Key | None = None
    for entries in per_rule:
        position = 0 if previous is None else bisect_right(entries, previous)
        if position == len(entries):
            return None
        previous = entries[position]
        start = start or previous
    return start


def _measure(correlation: CompiledCorrelation, window: _Window) -> float:
    if correlation.type == "event_count":
        return len(window.keys)
    if correlation.type == "value_count":
        return len(window.values)
    return sum(1 for entries in window.per_rule if entries)


def _match_if_holds(
    correlation: CompiledCorrelation, group: _GroupValues, window: _Window
) -> CorrelationMatch | None:
    """Return the match when the correlation's condition holds for this window, else None."""
    if correlation.type == "temporal_ordered":
        start = _sequence_start(window.per_rule)
        if start is None:
            return None
    elif _COMPARE[correlation.threshold_op](_measure(correlation, window), correlation.threshold):
        start = window.keys[0]
    else:
        return None
    keys = window.keys[bisect_left(window.keys, start) :]
    distinct = correlation.type == "value_count"
    return CorrelationMatch(
        rule_id=correlation.id,
        title=correlation.title,
        level=correlation.level,
        tags=correlation.tags,
        group=dict(zip(correlation.group_by, group, strict=True)),
        count=len(window.values) if distinct else len(keys),
        first_seen=keys[0][0],
        last_seen=window.keys[-1][0],
        events=tuple(event for key, event in window.samples if key >= start),
    )


def _nested_event(match: CorrelationMatch) -> dict[str, Any]:
    """Return the event a correlation over this correlation sees: its last event and group."""
    last = match.events[-1] if match.events else {}
    return {**last, **match.group}


class CorrelationState:
    """Bounded, per-process sliding-window state for a set of compiled correlations.

    Time is event time: the newest timestamp seen (by `observe` or `flush`) is the
    watermark. Choices, documented here because Sigma leaves them open:

    - gt/gte (and temporal) conditions use a sliding window per (correlation, group):
      entries older than `timespan` before the group's newest event are dropped. When
      the condition holds, one match is emitted and the group starts afresh, so 50
      failed logins against a threshold of 10 give 5 matches, not 41.
    - lt/lte/eq/neq conditions (absence, exact counts) use a window opened by a group's
      first event and decided when the watermark passes its end: lazily by the next
      `observe`, or by `flush(now)`. A group with no event has no window, so never fires.
    - An event lacking a group-by field (or value_count's field) does not count.
    - Events may arrive out of order: one older than the watermark by more than the
      timespan is ignored and counted in `late`; others are placed in order.
    - At most `max_groups` windows live at once; beyond, the least recently touched is
      dropped and counted in `evicted`.
    - A correlation referring to another correlation receives its matches as events
      (the match's last event plus its group-by values). Matches of a correlation
      referred to by one with `generate: false` are not returned (`silenced`).
    """

    def __init__(
        self, correlations: Sequence[CompiledCorrelation], *, max_groups: int = 100_000
    ) -> None:
        if max_groups < 1:
            raise ValueError("max_groups must be at least 1")
        self._correlations = tuple(correlations)
        self._plans = tuple(_plan(correlation) for correlation in self._correlations)
        self._max_groups = max_groups
        self._by_reference = self._index_references()
        self.references: frozenset[str] = frozenset(self._by_reference)
        self.silenced: frozenset[str] = self._silenced_references()
        self._owners = {c.id: c.own_identifiers() for c in self._correlations}
        self._windows: OrderedDict[_WindowKey, _Window] = OrderedDict()
        self._deadlines: list[tuple[float, int, _WindowKey]] = []
        self._serials = itertools.count()
        self._arrivals = itertools.count()
        self._watermark = float("-inf")
        self.evicted = 0
        self.late = 0

    def _index_references(self) -> dict[str, tuple[int, ...]]:
        index: dict[str, list[int]] = {}
        for position, plan in enumerate(self._plans):
            for identifier in frozenset().union(*plan.identifiers):
                index.setdefault(identifier, []).append(position)
        return {identifier: tuple(found) for identifier, found in index.items()}

    def _silenced_references(self) -> frozenset[str]:
        """Ids and names of rules referred to by a correlation that does not `generate`."""
        quiet = (
            plan for c, plan in zip(self._correlations, self._plans, strict=True) if not c.generate
        )
        return frozenset(item for plan in quiet for ids in plan.identifiers for item in ids)

    @property
    def groups(self) -> int:
        """Return the number of live windows."""
        return len(self._windows)

    def observe(
        self, matched: Collection[str], event: Mapping[str, Any], timestamp: float
    ) -> list[CorrelationMatch]:
        """`matched` holds the ids AND names of the base rules that matched this event."""
        found = self._advance(timestamp)
        found += self._feed(matched, event, timestamp)
        return self._publish(found)

    def flush(self, now: float) -> list[CorrelationMatch]:
        """Move the watermark to `now`: decide closing windows that ended, drop expired ones."""
        return self._publish(self._advance(now))

    def _publish(self, found: list[CorrelationMatch]) -> list[CorrelationMatch]:
        """Feed matches to the correlations over them, then drop the silenced ones."""
        published: list[CorrelationMatch] = []
        pending, depth = found, 0
        while pending and depth <= len(self._correlations):
            published += pending
            fed: list[CorrelationMatch] = []
            for match in pending:
                owner = self._owners[match.rule_id]
                if not owner.isdisjoint(self._by_reference):
                    fed += self._feed(owner, _nested_event(match), match.last_seen)
            pending, depth = fed, depth + 1
        return [
            match for match in published if self._owners[match.rule_id].isdisjoint(self.silenced)
        ]

    def _advance(self, now: float) -> list[CorrelationMatch]:
        """Raise the watermark; close or forget every window whose time is over."""
        self._watermark = max(self._watermark, now)
        found: list[CorrelationMatch] = []
        while self._deadlines and self._deadlines[0][0] < self._watermark:
            _, serial, key = heapq.heappop(self._deadlines)
            window = self._windows.get(key)
            if window is None or window.serial != serial:
                continue
            correlation = self._correlations[key[0]]
            deadline = window.deadline(correlation)
            if deadline >= self._watermark:
                heapq.heappush(self._deadlines, (deadline, serial, key))
                continue
            del self._windows[key]
            if correlation.closes_window:
                found += filter(None, [_match_if_holds(correlation, key[1], window)])
        return found

    def _feed(
        self, matched: Collection[str], event: Mapping[str, Any], timestamp: float
    ) -> list[CorrelationMatch]:
        positions = sorted({p for item in matched for p in self._by_reference.get(item, ())})
        found: list[CorrelationMatch] = []
        key = (timestamp, next(self._arrivals))
        for position in positions:
            found += self._feed_one(position, matched, event, key)
        return found

    def _feed_one(
        self, position: int, matched: Collection[str], event: Mapping[str, Any], key: _Key
    ) -> list[CorrelationMatch]:
        correlation, plan = self._correlations[position], self._plans[position]
        if key[0] < self._watermark - correlation.timespan_seconds:
            self.late += 1
            return []
        rules = [i for i, ids in enumerate(plan.identifiers) if not ids.isdisjoint(matched)]
        found: list[CorrelationMatch] = []
        for group, group_rules in _groups(plan, rules, event).items():
            value = _distinct_value(plan, group_rules[0], event)
            if correlation.type == "value_count" and value is None:
                continue
            match = self._add(position, group, key, event, group_rules, value)
            if match is not None:
                found.append(match)
        return found

    def _add(
        self,
        position: int,
        group: _GroupValues,
        key: _Key,
        event: Mapping[str, Any],
        rules: Sequence[int],
        value: Hashable | None,
    ) -> CorrelationMatch | None:
        """Record the event in its window; return (and reset) a match its condition now gives."""
        correlation = self._correlations[position]
        window = self._window((position, group), key[0])
        sliding = not correlation.closes_window
        window.add(key, event, rules, value, sliding=sliding)
        if not sliding:
            return None
        window.expire(window.keys[-1][0] - correlation.timespan_seconds)
        match = _match_if_holds(correlation, group, window) if window.keys else None
        if match is not None:
            del self._windows[(position, group)]
        return match

    def _window(self, key: _WindowKey, timestamp: float) -> _Window:
        """Return the live window for this key, opening one (evicting if full) when absent."""
        window = self._windows.get(key)
        if window is not None:
            self._windows.move_to_end(key)
            return window
        if len(self._windows) >= self._max_groups:
            self._windows.popitem(last=False)
            self.evicted += 1
        self._compact_deadlines()  # before the new window joins: it has no entries yet
        correlation = self._correlations[key[0]]
        temporal = correlation.type in ("temporal", "temporal_ordered")
        window = _Window(next(self._serials), len(correlation.rules) if temporal else 0)
        self._windows[key] = window
        deadline = timestamp + correlation.timespan_seconds
        heapq.heappush(self._deadlines, (deadline, window.serial, key))
        return window

    def _compact_deadlines(self) -> None:
        """Rebuild the deadline heap when evicted and reset windows dominate it."""
        if len(self._deadlines) <= 2 * len(self._windows) + 1024:
            return
        self._deadlines = [
            (window.deadline(self._correlations[key[0]]), window.serial, key)
            for key, window in self._windows.items()
            if window.keys
        ]
        heapq.heapify(self._deadlines)


def _groups(
    plan: _Plan, rules: Sequence[int], event: Mapping[str, Any]
) -> dict[_GroupValues, list[int]]:
    """Return the group-by values of this event for each matched rule (via its aliases)."""
    if len(rules) == 1:  # the usual case: one referenced rule matched
        [position] = rules
        values = tuple(_hashable(event.get(name)) for name in plan.group_fields[position])
        return {values: [position]} if None not in values else {}
    groups: dict[_GroupValues, list[int]] = {}
    for position in rules:
        values = tuple(_hashable(event.get(name)) for name in plan.group_fields[position])
        if all(value is not None for value in values):
            groups.setdefault(values, []).append(position)
    return groups


def _distinct_value(plan: _Plan, position: int, event: Mapping[str, Any]) -> Hashable | None:
    name = plan.value_fields[position]
    return _hashable(event.get(name)) if name else None
