"""Read the syslog header (RFC 3164, RFC 5424 or an ISO 8601 stamp) off a text log line."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from puffin.ingest.decoders.fields import Event, to_int

MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
FACILITIES = (
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "security", "console", "solaris-cron",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
)  # fmt: skip
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")

_BSD = re.compile(
    r"(?:<(?P<pri>\d{1,3})>)?"
    r"(?:(?:(?P<year>\d{4}) )?"
    r"(?P<month>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<day>\d{1,2})"
    r" (?P<clock>[0-2]\d:[0-5]\d:[0-6]\d)(?P<fraction>\.\d{1,6})?"
    r"|(?P<iso>\d{4}-[01]\d-[0-3]\d[T ][0-2]\d:[0-5]\d:[0-6]\d(?:\.\d{1,9})?"
    r"(?:Z|[+-][0-2]\d:?[0-5]\d)?))"
    r" +(?P<rest>.*)",
    re.DOTALL | re.ASCII,
)
_RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<version>[1-9]\d?) (?P<stamp>\S+) (?P<hostname>\S+)"
    r" (?P<app_name>\S+) (?P<procid>\S+) (?P<msgid>\S+)(?: (?P<rest>.*))?",
    re.DOTALL | re.ASCII,
)
# Host (optional, never ending in ':'), then `program`, `program[pid]` or `su(pam_unix)[pid]`.
_TAG = re.compile(
    r"(?:(?P<hostname>[^\s\[\]]*[^\s\[\]:]) +)?"
    r"(?P<program>[^\s\[\]:()]+)(?:\((?P<subsystem>[^()\s]*)\))?(?:\[(?P<pid>\d+)\])?: ?"
    r"(?P<message>.*)",
    re.DOTALL,
)
_HOST_ONLY = re.compile(r"(?P<hostname>\S+) +(?P<message>.*)", re.DOTALL)
_SOLARIS_ID = re.compile(r"\[ID \d+ [\w.]+\] ")
_SD_ELEMENT = re.compile(
    r'\[(?P<id>[^\s\]="]+)(?P<params>(?:\s+[^\s=\]"]+="(?:[^"\\]|\\.)*")*)\s*\]'
)
_SD_PARAM = re.compile(r'([^\s=\]"]+)="((?:[^"\\]|\\.)*)"')
_SD_ESCAPE = re.compile(r"\\([\"\\\]])")


def parse_header(line: str, *, year: int | None) -> Event | None:
    """Return the header fields and `message`, or None when the line has no syslog header."""
    if line.startswith("<"):
        match = _RFC5424.match(line)
        if match is not None:
            return _rfc5424(match)
    match = _BSD.match(line)
    if match is None:
        return None
    event: Event = {}
    _put_priority(event, match.group("pri"))
    stamp = _bsd_timestamp(match, year) if match.group("month") else _iso(match.group("iso"))
    if stamp is not None:
        event["timestamp"] = stamp
    _put_tag(event, match.group("rest"))
    return event


def _put_tag(event: Event, rest: str) -> None:
    tag = _TAG.match(rest)
    if tag is None:
        host_only = _HOST_ONLY.match(rest)
        if host_only is not None:
            event["hostname"], rest = host_only.group("hostname", "message")
        event["message"] = rest
        return
    hostname, program, subsystem, pid, message = tag.group(
        "hostname", "program", "subsystem", "pid", "message"
    )
    if hostname:
        event["hostname"] = hostname
    event["program"] = program
    if subsystem:
        event["subsystem"] = subsystem
    if pid and (number := to_int(pid)) is not None:
        event["pid"] = number
    if message.startswith("[ID ") and (solaris := _SOLARIS_ID.match(message)) is not None:
        message = message[solaris.end() :]
    event["message"] = message


def _put_priority(event: Event, pri: str | None) -> None:
    value = to_int(pri)
    if value is None or value > 191:
        return
    event["facility"] = FACILITIES[value >> 3]
    event["severity"] = SEVERITIES[value & 7]


def _bsd_timestamp(match: re.Match[str], year: int | None) -> str | None:
    """RFC 3164 stamps mostly carry no year: use the one given, else the current year."""
    stamp_year, month_name, day_text, clock, fraction = match.group(
        "year", "month", "day", "clock", "fraction"
    )
    if stamp_year:
        year = int(stamp_year)
    elif year is None:
        year = datetime.now().year  # the stamp is local time too
    month, day = MONTHS[month_name], int(day_text)
    if year < 1 or not 1 <= day <= _days_in(year, month):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{clock}{fraction or ''}"


def _days_in(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _iso(text: str | None) -> str | None:
    if not text or text == "-":
        return None
    try:
        return datetime.fromisoformat(text).isoformat()
    except ValueError:
        return text


def _rfc5424(match: re.Match[str]) -> Event:
    event: Event = {}
    _put_priority(event, match.group("pri"))
    stamp = _iso(match.group("stamp"))
    if stamp is not None:
        event["timestamp"] = stamp
    for name in ("hostname", "app_name", "procid", "msgid"):
        if match.group(name) != "-":
            event[name] = match.group(name)
    if "app_name" in event:
        event["program"] = event["app_name"]
    pid = to_int(event.get("procid"))
    if pid is not None:
        event["pid"] = pid
    data, message = _structured_data(match.group("rest") or "")
    if data:
        event["structured_data"] = data
    event["message"] = message.removeprefix("\ufeff")
    return event


def _structured_data(rest: str) -> tuple[dict[str, Any], str]:
    """Split RFC 5424 structured data (`-` or `[id k="v"]…`) from the message."""
    if rest.startswith("-"):
        return {}, rest[2:]
    data: dict[str, Any] = {}
    position = 0
    while True:
        element = _SD_ELEMENT.match(rest, position)
        if element is None:
            break
        data[element.group("id")] = {
            name: _SD_ESCAPE.sub(r"\1", value)
            for name, value in _SD_PARAM.findall(element.group("params"))
        }
        position = element.end()
    return data, rest[position:].removeprefix(" ")
