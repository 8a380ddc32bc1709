"""Decode systemd and systemd-logind: units started, stopped and failed; user sessions."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import Event, ProgramDecoder, Rule

_UNIT = (
    r"[\w@\-.:\\]+\.(?:service|socket|target|timer|mount|automount|swap|path|slice|scope|device)"
)
_ANY_UNIT = re.compile(rf"(?<![\w@\-.:\\])(?P<unit>{_UNIT})\b")
_SUBJECT = re.compile(rf"(?P<unit>{_UNIT})(?: - (?P<description>.+))?$|(?P<text>.+)$", re.DOTALL)
_SESSION_USER = re.compile(r"[Ss]ession (?P<session_id>\S+) of [Uu]ser (?P<user>[^\s.]+)")

_SHAPES = tuple(
    Rule(re.compile(pattern, re.DOTALL), fixed)
    for pattern, fixed in (
        (r"Started (?P<subject>.+?)\.?$", {"action": "service_started", "status": "success"}),
        (r"Starting (?P<subject>.+?)(?:\.\.\.|…)?$", {"action": "service_starting"}),
        (r"Stopped (?P<subject>.+?)\.?$", {"action": "service_stopped", "status": "success"}),
        (r"Stopping (?P<subject>.+?)(?:\.\.\.|…)?$", {"action": "service_stopping"}),
        (r"Reloaded (?P<subject>.+?)\.?$", {"action": "service_reloaded", "status": "success"}),
        (
            r"Failed to start (?P<subject>.+?)\.?$",
            {"action": "service_failed", "status": "failure"},
        ),
        (
            rf"(?P<unit>{_UNIT}): Failed with result '(?P<result>[^']*)'",
            {"action": "service_failed", "status": "failure"},
        ),
        (
            rf"(?P<unit>{_UNIT}): Main process exited, code=(?P<exit_code>\w+),"
            r" status=(?P<exit_status>\S+)",
            {"action": "service_exited"},
        ),
        (
            rf"(?P<unit>{_UNIT}): (?:Deactivated successfully|Succeeded)",
            {"action": "service_stopped", "status": "success"},
        ),
        (
            r"New session (?P<session_id>\S+) of user (?P<user>[^\s.]+)",
            {"action": "session_opened"},
        ),
        (r"Removed session (?P<session_id>[^\s.]+)", {"action": "session_closed"}),
        (r"Session (?P<session_id>\S+) logged out", {"action": "logout"}),
        (r"Time has been changed", {"action": "time_changed"}),
        (r"Failed to (?P<reason>.+)", {"status": "failure"}),
    )
)
_CLEAN_EXIT = ("0/SUCCESS", "0")


def decode_systemd(message: str, event: Event) -> bool:
    """Fill the unit, action and outcome of a systemd message."""
    for shape in _SHAPES:
        match = shape.pattern.match(message)
        if match is None:
            continue
        groups = {name: value for name, value in match.groupdict().items() if value}
        subject = groups.pop("subject", None)
        event.update(groups)
        event.update(shape.fixed)
        if subject is not None:
            _subject(subject, event)
        break
    _exit_outcome(event)
    if "unit" not in event:
        unit = _ANY_UNIT.search(message)
        if unit is not None:
            event["unit"] = unit.group("unit")
    return True


def _subject(subject: str, event: Event) -> None:
    """`nginx.service - Web server`, `nginx.service`, or (older systemd) the description."""
    parts = _SUBJECT.match(subject)
    if parts is None:
        return
    if parts.group("unit"):
        event["unit"] = parts.group("unit")
    description = parts.group("description") or parts.group("text")
    if description:
        event["unit_description"] = description
        session = _SESSION_USER.search(description)
        if session is not None:
            event.update(session.groupdict())


def _exit_outcome(event: Event) -> None:
    if event.get("action") != "service_exited":
        return
    clean = event.get("exit_code") == "exited" and event.get("exit_status") in _CLEAN_EXIT
    event["status"] = "success" if clean else "failure"


DECODERS = (ProgramDecoder("systemd", ("systemd", "systemd-logind"), decode_systemd),)
