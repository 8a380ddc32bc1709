"""Puffin's own rule options, kept in a rule's `puffin:` block (a Sigma custom attribute).

Sigma has no notion of how repeated matches become alerts, so a rule says it in a block
that pySigma keeps as a custom attribute and other Sigma tools ignore:

    puffin:
      dedupe:
        fields: [agent, src_ip]   # repeats with the same values fold into one alert
        window: 30m               # for this long after the alert was first seen

`dedupe: false` (or `window: 0`) turns folding off for the rule, whatever the server's
default says. A malformed block is an error of the rule, reported like any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OPTIONS_KEY = "puffin"
MAX_WINDOW_SECONDS = 30 * 86_400
MAX_DEDUPE_FIELDS = 10
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_KNOWN = {"dedupe"}
_KNOWN_DEDUPE = {"fields", "window"}


@dataclass(frozen=True)
class Dedupe:
    """How a rule's repeated matches fold into one open alert."""

    fields: tuple[str, ...] = ()
    window_seconds: int = 0


def parse_duration(value: Any, *, where: str) -> int:
    """Return seconds from `90`, `"90s"`, `"10m"`, `"2h"` or `"1d"`; raise ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"{where} must be a duration such as 10m, not {value!r}")
    if isinstance(value, int):
        seconds = value
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"{where} must be a duration such as 90s, 10m, 2h or 1d")
        seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 0 <= seconds <= MAX_WINDOW_SECONDS:
        raise ValueError(f"{where} must be between 0 and {MAX_WINDOW_SECONDS // 86_400} days")
    return seconds


def dedupe_of(custom_attributes: Mapping[str, Any]) -> Dedupe | None:
    """Return the rule's own dedupe option, None when it has none; raise ValueError."""
    block = custom_attributes.get(OPTIONS_KEY)
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise ValueError(f"{OPTIONS_KEY}: must be a mapping (for example puffin: {{dedupe: …}})")
    unknown = sorted(set(block) - _KNOWN)
    if unknown:
        raise ValueError(f"{OPTIONS_KEY}: unknown option {unknown[0]!r} (known: dedupe)")
    value = block.get("dedupe")
    if value is None:
        return None
    if value is False:
        return Dedupe()
    if not isinstance(value, Mapping):
        raise ValueError(f"{OPTIONS_KEY}.dedupe must be false or a mapping with fields, window")
    return _dedupe(value)


def _dedupe(value: Mapping[str, Any]) -> Dedupe:
    unknown = sorted(set(value) - _KNOWN_DEDUPE)
    if unknown:
        raise ValueError(f"{OPTIONS_KEY}.dedupe: unknown key {unknown[0]!r} (fields, window)")
    if "window" not in value:
        raise ValueError(f"{OPTIONS_KEY}.dedupe needs a window, such as window: 10m")
    window = parse_duration(value["window"], where=f"{OPTIONS_KEY}.dedupe.window")
    fields = value.get("fields", [])
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields):
        raise ValueError(f"{OPTIONS_KEY}.dedupe.fields must be a list of field names")
    if len(fields) > MAX_DEDUPE_FIELDS:
        raise ValueError(f"{OPTIONS_KEY}.dedupe.fields holds at most {MAX_DEDUPE_FIELDS} names")
    return Dedupe(fields=tuple(fields), window_seconds=window)
