"""Helpers the program decoders share: addresses, numbers, key=value pairs and rule tables."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
DecodeMessage = Callable[[str, Event], bool]

_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}", re.ASCII)
_IPV6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:\d{1,3}(?:\.\d{1,3}){3})?(?:%\w+)?", re.ASCII)
INTEGER_FIELDS = frozenset({"src_port", "dst_port", "pid", "http_status", "bytes", "count"})
_NO_HOST = frozenset({"", "-", "?", "UNKNOWN", "unknown", "(null)"})

# A key, "=", then a double-quoted, single-quoted (possibly cut short) or bare value.
_PAIR = re.compile(r"""([A-Za-z_][\w.\-\[\]]*)=("[^"]*"?|'[^']*'?|[^\s"']*)""")


@dataclass(frozen=True)
class ProgramDecoder:
    """A decoder for the messages of some programs; `decode` says whether it recognised one."""

    name: str
    programs: tuple[str, ...]
    decode: DecodeMessage


@dataclass(frozen=True)
class Rule:
    """One message shape: a regex whose named groups become fields, plus fixed fields."""

    pattern: re.Pattern[str]
    fixed: Mapping[str, Any] = field(default_factory=dict)


def to_int(text: str | None) -> int | None:
    """Return the integer in `text`, or None when it holds none."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def put_int(event: Event, name: str, text: str | None) -> None:
    """Set an integer field when `text` is a number."""
    number = to_int(text)
    if number is not None:
        event[name] = number


def is_ip(text: str) -> bool:
    """Say whether `text` looks like an IPv4 or IPv6 address."""
    if _IPV4.fullmatch(text):
        return True
    return text.count(":") >= 2 and _IPV6.fullmatch(text) is not None


def put_host(
    event: Event, host: str | None, *, ip_field: str = "src_ip", name_field: str = "src_host"
) -> None:
    """Set `src_ip` when the host is an address, else `src_host` when it is a name."""
    if host is None:
        return
    host = host.strip("[]")
    if host in _NO_HOST:
        return
    event[ip_field if is_ip(host) else name_field] = host


def key_values(text: str) -> Iterator[tuple[str, str, bool]]:
    """Yield (key, value, was_quoted) for every key=value pair in `text`."""
    for key, raw in _PAIR.findall(text):
        quote = raw[:1]
        if quote == '"' or quote == "'":
            closed = len(raw) > 1 and raw[-1] == quote
            yield key, raw[1:-1] if closed else raw[1:], True
        elif raw.endswith((",", ")")):
            yield key, _trim_bare(raw), False
        else:
            yield key, raw, False


def _trim_bare(value: str) -> str:
    """Drop the commas and unbalanced closing parentheses that end a bare value in prose."""
    value = value.rstrip(",")
    while value.endswith(")") and value.count(")") > value.count("("):
        value = value[:-1].rstrip(",")
    return value


def apply_rules(rules: Mapping[str, tuple[Rule, ...]], message: str, event: Event) -> bool:
    """Match the message against the rules filed under its first word; fill fields."""
    first_word = message.split(" ", 1)[0]
    for rule in rules.get(first_word, ()):
        match = rule.pattern.match(message)
        if match is not None:
            store_groups(event, match.groupdict())
            event.update(rule.fixed)
            return True
    return False


def store_groups(event: Event, groups: Mapping[str, str | None]) -> None:
    """Store named regex groups as fields: `host` and `dst_host` become addresses or names,
    counters become integers, empty values are left out."""
    for name, value in groups.items():
        if not value:
            continue
        if name == "host":
            put_host(event, value)
        elif name == "dst_host":
            put_host(event, value, ip_field="dst_ip", name_field="dst_host")
        elif name in INTEGER_FIELDS:
            put_int(event, name, value)
        else:
            event[name] = value


def index_rules(
    *entries: tuple[tuple[str, ...], str, Mapping[str, Any]],
) -> dict[str, tuple[Rule, ...]]:
    """Build a first-word index from (first words, regex, fixed fields) entries."""
    index: dict[str, list[Rule]] = {}
    for first_words, pattern, fixed in entries:
        rule = Rule(re.compile(pattern, re.DOTALL), fixed)
        for word in first_words:
            index.setdefault(word, []).append(rule)
    return {word: tuple(rules) for word, rules in index.items()}
