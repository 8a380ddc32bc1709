"""Decode Linux audit records (`type=X msg=audit(time:serial): key=value …`), one or several
records of the same event on one line, bare or behind a syslog header."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from puffin.ingest.decoders.fields import Event, ProgramDecoder, key_values, put_host, to_int

_RECORD = re.compile(
    r"(?:node=(?P<node>\S+) )?type ?=(?P<type>\S+) (?:msg=)?"
    r"audit\((?P<time>\d+(?:\.\d+)?):(?P<serial>\d+)\): ?",
    re.ASCII,
)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})+", re.ASCII)
_EXECVE_ARGUMENT = re.compile(r"a\d+", re.ASCII)
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
    if first.group("node"):
        event["node"] = first.group("node")
    if "timestamp" not in event:
        event["timestamp"] = _epoch(first.group("time"))
    for index, record in enumerate(records):
        end = records[index + 1].start() if index + 1 < len(records) else len(message)
        _record_fields(event, record.group("type"), message[record.end() : end])
    _derive(event)
    return True


def _record_fields(event: Event, record_type: str, body: str) -> None:
    for separator in _SEPARATORS:
        body = body.replace(separator, " ")
    execve = record_type == "EXECVE"
    if execve:
        _drop_registers(event)
        event["command"] = _argv(body)
    avc = _AVC.match(body)
    if avc is not None:
        event.update(avc.groupdict())
    for key, value, quoted in key_values(body):
        if key == "msg" and quoted:
            _inner_fields(event, value)
            continue
        overrides = execve and _EXECVE_ARGUMENT.fullmatch(key) is not None
        _put(event, key, _unhex(key, value, quoted, execve), overwrite=overrides)


def _inner_fields(event: Event, text: str) -> None:
    """`msg='op=… acct=… exe=… res=…'` of user-space records: flatten its pairs."""
    for key, value, quoted in key_values(text):
        _put(event, key, _unhex(key, value, quoted, False), overwrite=False)


def _put(event: Event, key: str, value: str, *, overwrite: bool) -> None:
    if key in _RENAMED:
        key = f"audit_{key}"
    if key == "pid":
        pid = to_int(value)
        if pid is not None:
            event["pid"] = pid
        return
    if overwrite or key not in event:
        event[key] = value


def _unhex(key: str, value: str, quoted: bool, execve: bool) -> str:
    """Unquoted values of string fields are hex when they hold spaces or odd bytes."""
    if quoted or not _HEX.fullmatch(value):
        return value
    if key in ("proctitle", "cmd") or (execve and _EXECVE_ARGUMENT.fullmatch(key)):
        return bytes.fromhex(value).decode("utf-8", "replace").replace("\x00", " ").strip()
    return value


def _drop_registers(event: Event) -> None:
    """A SYSCALL record's a0-a3 are raw registers; the EXECVE record's aN are the argv."""
    for key in [key for key in event if _EXECVE_ARGUMENT.fullmatch(key)]:
        del event[key]


def _argv(body: str) -> str:
    arguments: dict[int, str] = {}
    for key, value, quoted in key_values(body):
        position = to_int(key[1:]) if _EXECVE_ARGUMENT.fullmatch(key) else None
        if position is not None:
            arguments[position] = _unhex(key, value, quoted, True)
    return " ".join(arguments[index] for index in sorted(arguments))


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
