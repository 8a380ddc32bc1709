"""Decode Linux audit records (`type=X msg=audit(time:serial): key=value …`), one or several
records of the same event on one line, bare or behind a syslog header."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from puffin.ingest.decoders.fields import Event, ProgramDecoder, key_values, put_host, to_int

# Starts with a literal so that the regex engine can skip ahead quickly on long lines.
_RECORD = re.compile(
    r"type ?=(?P<type>\S+) (?:msg=)?audit\((?P<time>\d+(?:\.\d+)?):(?P<serial>\d+)\): ?",
    re.ASCII,
)
_NODE = re.compile(r"node=(\S+) $")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)
_ARGUMENT = re.compile(r"a\d+", re.ASCII)
_HEX_FIELDS = frozenset({"proctitle", "cmd"})
_AVC = re.compile(r"avc: +(?P<avc_result>\w+) +\{ (?P<permissions>[^}]*) \}")
# Enriched logs append translated fields after a group separator (sometimes escaped as text).
_SEPARATORS = ("\x1d", "\\u001D", "\\u001d")
# Fields the header owns, or whose audit meaning differs: stored under an `audit_` name.
_RENAMED = frozenset({"full_log", "decoder", "timestamp", "hostname", "program", "message", "type"})
_SUCCESS = {"yes": "success", "success": "success", "1": "success"}
_FAILURE = {"no": "failure", "failed": "failure", "0": "failure"}


def decode_audit(message: str, event: Event) -> bool:
    """Fill audit fields from the records in `message`; False when it holds none."""
    records = list(_RECORD.finditer(message))
    if not records:
        return False
    first = records[0]
    event["audit_type"] = first.group("type")
    event["audit_id"] = first.group("serial")
    node = _NODE.search(message, 0, first.start())
    if node is not None:
        event["node"] = node.group(1)
    if "timestamp" not in event:
        event["timestamp"] = _epoch(first.group("time"))
    for index, record in enumerate(records):
        end = records[index + 1].start() if index + 1 < len(records) else len(message)
        _record_fields(event, record.group("type"), message[record.end() : end])
    _derive(event)
    return True


def _record_fields(event: Event, record_type: str, body: str) -> None:
    for separator in _SEPARATORS:
        if separator in body:
            body = body.replace(separator, " ")
    if record_type == "EXECVE":
        _execve_fields(event, body)
        return
    avc = _AVC.match(body)
    if avc is not None:
        event.update(avc.groupdict())
    for key, value, quoted in key_values(body):
        if key == "msg" and quoted:
            for inner_key, inner_value, inner_quoted in key_values(value):
                _put(event, inner_key, _unhex_field(inner_key, inner_value, inner_quoted))
        else:
            _put(event, key, _unhex_field(key, value, quoted))


def _execve_fields(event: Event, body: str) -> None:
    """EXECVE's a0…aN are the argv (hex when they hold spaces); SYSCALL's a0-a3 were
    raw registers, so they give way."""
    for key in [key for key in event if _ARGUMENT.fullmatch(key)]:
        del event[key]
    arguments: dict[int, str] = {}
    for key, value, quoted in key_values(body):
        position = to_int(key[1:]) if _ARGUMENT.fullmatch(key) else None
        if position is None:
            _put(event, key, value)
            continue
        value = value if quoted else _unhex(value)
        arguments[position] = event[key] = value
    event["command"] = " ".join(arguments[index] for index in sorted(arguments))


def _put(event: Event, key: str, value: str) -> None:
    """Keep the first record's value; header-like keys get an `audit_` name."""
    if key in _RENAMED:
        key = f"audit_{key}"
    if key == "pid":
        pid = to_int(value)
        if pid is not None:
            event["pid"] = pid
    elif key not in event:
        event[key] = value


def _unhex_field(key: str, value: str, quoted: bool) -> str:
    return _unhex(value) if not quoted and key in _HEX_FIELDS else value


def _unhex(value: str) -> str:
    """auditd writes a string field as hex when it holds spaces, quotes or odd bytes."""
    if not _HEX.fullmatch(value):
        return value
    return bytes.fromhex(value).decode("utf-8", "replace").replace("\x00", " ").strip()


def _derive(event: Event) -> None:
    """Common names: `status` from success/res, `src_ip` from addr, `user` from acct."""
    outcome = str(event.get("success", event.get("res", ""))).lower()
    if outcome in _SUCCESS:
        event["status"] = _SUCCESS[outcome]
    elif outcome in _FAILURE:
        event["status"] = _FAILURE[outcome]
    address = event.get("addr")
    if isinstance(address, str):
        put_host(event, address)
    account = event.get("acct")
    if isinstance(account, str) and account not in ("?", "(unknown)") and "user" not in event:
        event["user"] = account


def _epoch(text: str) -> str:
    try:
        return datetime.fromtimestamp(float(text), tz=UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return text


def _decode_program(message: str, event: Event) -> bool:
    return decode_audit(message, event)


DECODERS = (ProgramDecoder("auditd", ("auditd", "audit", "audispd", "auditbeat"), _decode_program),)
