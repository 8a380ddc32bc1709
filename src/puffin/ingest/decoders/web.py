"""Decode web server access logs: Apache and nginx common, combined and vhost-prefixed formats."""

from __future__ import annotations

import re
from datetime import datetime

from puffin.ingest.decoders.fields import Event, ProgramDecoder, is_ip, put_int, to_int
from puffin.ingest.decoders.header import MONTHS

_QUOTED = r'(?:[^"\\]|\\.)*'
_ACCESS = re.compile(
    r"(?P<clients>[^\[\"]*?) ?"
    r"\[(?P<day>\d{1,2})/(?P<month>[A-Z][a-z]{2})/(?P<year>\d{4}):(?P<clock>\d\d:\d\d:\d\d)"
    r"(?: (?P<zone>[+-]\d{4}))?\] "
    rf'"(?P<request>{_QUOTED})" (?P<http_status>\d{{3}}|-) (?P<bytes>\d+|-)'
    rf'(?: +"(?P<referrer>{_QUOTED})"(?: +"(?P<user_agent>{_QUOTED})"?)?)?',
    re.DOTALL | re.ASCII,
)
_VHOST = re.compile(r"[\w.\-]+:\d+", re.ASCII)
_NOT_SET = ("", "-")


def looks_like_access_log(text: str) -> bool:
    """A cheap test before the full regex: a bracketed time followed by a quoted request."""
    return '] "' in text


def decode_access_log(message: str, event: Event) -> bool:
    """Fill client, request and response fields; False when the line is not an access log."""
    match = _ACCESS.match(message)
    if match is None:
        return False
    if not _clients(match.group("clients"), event):
        return False
    _request(match.group("request"), event)
    put_int(event, "http_status", match.group("http_status"))
    event["bytes"] = to_int(match.group("bytes")) or 0
    for name in ("referrer", "user_agent"):
        if match.group(name) not in (None, *_NOT_SET):
            event[name] = match.group(name)
    if "timestamp" not in event:
        _timestamp(match, event)
    return True


def _clients(prefix: str, event: Event) -> bool:
    """`client ident user`, optionally after `vhost:port` or with a forwarded address."""
    tokens = prefix.split()
    if len(tokens) < 2:
        return False
    if _VHOST.fullmatch(tokens[0]) and not is_ip(tokens[0]):
        event["vhost"] = tokens.pop(0)
    addresses = [token for token in tokens[:-1] if is_ip(token)]
    if addresses:
        event["src_ip"] = addresses[0]
    elif tokens[0] not in _NOT_SET:
        event["src_host"] = tokens[0]
    if len(addresses) > 1:
        event["forwarded_ip"] = addresses[1]
    if len(tokens) >= 3 and tokens[-1] not in _NOT_SET:
        event["user"] = tokens[-1]
    return True


def _request(request: str, event: Event) -> None:
    """`GET /path?q HTTP/1.1`; anything else is kept whole as `request`."""
    method, _, rest = request.partition(" ")
    url, _, protocol = rest.rpartition(" ")
    if method.isalpha() and url and protocol.startswith("HTTP/"):
        event["http_method"] = method
        event["url"] = url
        event["protocol"] = protocol
    elif method.isalpha() and rest and " " not in rest:
        event["http_method"] = method
        event["url"] = rest
    elif request not in _NOT_SET:
        event["request"] = request


def _timestamp(match: re.Match[str], event: Event) -> None:
    month = MONTHS.get(match.group("month"))
    year, day = int(match.group("year")), int(match.group("day"))
    if month is None:
        return
    try:
        datetime(year, month, day)  # only checks that the date exists
    except ValueError:
        return
    zone = match.group("zone") or ""
    offset = f"{zone[:3]}:{zone[3:]}" if zone else ""
    event["timestamp"] = f"{year:04d}-{month:02d}-{day:02d}T{match.group('clock')}{offset}"


def _decode_program(message: str, event: Event) -> bool:
    return looks_like_access_log(message) and decode_access_log(message, event)


DECODERS = (
    ProgramDecoder(
        "web-accesslog",
        ("nginx", "apache", "apache2", "httpd", "lighttpd", "apache-access", "nginx-access"),
        _decode_program,
    ),
)
