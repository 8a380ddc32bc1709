"""What compiled rules call at match time: per-event field views and a few helpers.

Compiled rules read an event through two memoising views: `LowerView` gives each
field's value as lower-case text (Sigma matching is case-insensitive by default) and
`RawView` as text unchanged (for `cased` and regular expressions). A list value becomes a
tuple of texts, and a rule matches when any element does. The key `None` holds every
value of the event joined by new lines, for keyword (full-text) detections.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

MISSING = object()


def _lookup(event: Mapping[str, Any], name: str) -> Any:
    value = event.get(name, MISSING)
    if value is not MISSING:
        return value
    if "." not in name:
        return None
    current: Any = event
    for part in name.split("."):
        if not isinstance(current, Mapping):
            return None
        current = current.get(part)
    return current


def _text(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except ValueError:  # an integer past Python's 4,300 digits cannot become text
        return ""


def _texts(value: Any) -> str | tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return tuple(_text(item) for item in value if item is not None)
    return _text(value)


def all_text(event: Mapping[str, Any]) -> str:
    """Return every value of the event as text, one per line: what keywords search."""
    parts: list[str] = []
    append = parts.append
    for value in event.values():
        kind = value.__class__
        if kind is str:
            append(value)
        elif kind is int:  # event ids, process ids: as `_text` writes them, without the call
            try:
                append(str(value))
            except ValueError:
                append("")
        elif value is None:
            continue
        elif isinstance(value, (list, tuple)):
            parts.extend(_text(item) for item in value if item is not None)
        else:
            append(_text(value))
    return "\n".join(parts)


class RawView(dict[Any, Any]):
    """An event's fields as text, computed once per field."""

    __slots__ = ("event",)

    def __init__(self, event: Mapping[str, Any]) -> None:
        super().__init__()
        self.event = event

    def __missing__(self, name: str | None) -> Any:
        value = self.event.get(name) if name is not None else MISSING
        if value.__class__ is str:
            self[name] = value
            return value
        if name is None:
            value = all_text(self.event)
        else:
            value = _texts(value if value is not None else _lookup(self.event, name))
        self[name] = value
        return value


class LowerView(RawView):
    """An event's fields as lower-case text, computed once per field."""

    __slots__ = ()

    def __missing__(self, name: str | None) -> Any:
        value = self.event.get(name) if name is not None else MISSING
        if value.__class__ is str:
            value = value.lower()
        elif name is None:
            value = all_text(self.event).lower()
        else:
            raw = _texts(value if value is not None else _lookup(self.event, name))
            if raw.__class__ is str:
                value = raw.lower()
            elif raw is None:
                value = None
            else:
                value = tuple(item.lower() for item in raw)
        self[name] = value
        return value


def _each(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return value if isinstance(value, tuple) else (value,)


@lru_cache(maxsize=65536)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return None


def cidr(value: Any, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    """Return True when the value is an address inside one of the networks."""
    for text in _each(value):
        address = _address(text)
        if address is not None and any(
            address.version == net.version and address in net for net in networks
        ):
            return True
    return False


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        try:
            whole = int(text, 0)
        except ValueError:
            return None
        try:
            return float(whole)
        except OverflowError:  # a huge hexadecimal number: larger than any threshold
            return math.inf if whole > 0 else -math.inf


def compare(value: Any, operator: str, number: float) -> bool:
    """Return True when a numeric value compares to `number` as the operator says."""
    for text in _each(value):
        found = _number(text)
        if found is None:
            continue
        if (
            (operator == "lt" and found < number)
            or (operator == "lte" and found <= number)
            or (operator == "gt" and found > number)
            or (operator == "gte" and found >= number)
        ):
            return True
    return False


def fieldref(lower: LowerView, name: str, other: str, mode: str) -> bool:
    """Return True when a field equals (starts or ends with) another field's value."""
    mine, theirs = lower[name], lower[other]
    if mine is None or theirs is None:
        return False
    for left in _each(mine):
        for right in _each(theirs):
            if (
                (mode == "equals" and left == right)
                or (mode == "startswith" and left.startswith(right))
                or (mode == "endswith" and left.endswith(right))
            ):
                return True
    return False


def timestamp_part(value: Any, part: str, number: int) -> bool:
    """Return True when the date in the value has this minute, hour, day, week, month or year."""
    for text in _each(value):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            continue
        found = {
            "minute": moment.minute,
            "hour": moment.hour,
            "day": moment.day,
            "week": moment.isocalendar()[1],
            "month": moment.month,
            "year": moment.year,
        }[part]
        if found == number:
            return True
    return False
