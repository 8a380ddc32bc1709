"""Decode PAM module messages (`pam_unix(sshd:auth): …`, `su(pam_unix)[1]: …`) whichever
program wrote them: sessions, authentication failures, password changes."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import (
    Event,
    ProgramDecoder,
    Rule,
    key_values,
    put_host,
    store_groups,
)

_MODULE = re.compile(r"(?P<pam_module>pam_\w+)\((?P<service>[^:)]*)(?::(?P<pam_type>\w+))?\): ")
_FAILURE_PAIRS = {"logname": "logname", "uid": "uid", "euid": "euid", "tty": "tty"}

_SHAPES = tuple(
    Rule(re.compile(pattern), fixed)
    for pattern, fixed in (
        (
            r"session opened for user (?P<user>[^\s(]+)(?:\(uid=(?P<uid>\d+)\))?"
            r"(?: by (?P<src_user>[^\s(]*)(?:\(uid=(?P<src_uid>\d+)\))?)?",
            {"action": "session_opened", "status": "success"},
        ),
        (
            r"session closed for user (?P<user>[^\s(]+)",
            {"action": "session_closed", "status": "success"},
        ),
        (
            r"(?:(?P<count>\d+) more )?authentication failures?;",
            {"action": "authentication", "status": "failure"},
        ),
        (
            r"authentication success;",
            {"action": "authentication", "status": "success"},
        ),
        (
            r"check pass; user unknown",
            {"action": "authentication", "status": "failure", "invalid_user": True},
        ),
        (
            r"password changed for (?P<user>\S+)",
            {"action": "password_changed", "status": "success"},
        ),
        (
            r"account (?P<user>\S+) has expired",
            {"action": "account_expired", "status": "failure"},
        ),
        (
            r"(?:Consecutive login failures for user|User) (?P<user>\S+)"
            r" account temporarily locked",
            {"action": "account_locked", "status": "failure"},
        ),
        (
            r"auth could not identify password for \[(?P<user>[^\]]*)\]",
            {"action": "authentication", "status": "failure"},
        ),
    )
)


def is_pam_message(message: str, subsystem: str | None) -> bool:
    """Say whether a line is PAM's; pam_systemd (logind bookkeeping) stays with its program."""
    if subsystem is not None and subsystem.startswith("pam"):
        return True
    return message.startswith("pam_") and not message.startswith("pam_systemd")


def decode_pam(message: str, event: Event) -> bool:
    """Fill the user, source and outcome of a PAM message."""
    module = _MODULE.match(message)
    if module is not None:
        store_groups(event, module.groupdict())
        message = message[module.end() :]
    else:
        event["pam_module"] = event.get("subsystem", "pam")
        if "program" in event:
            event["service"] = event["program"]
    for shape in _SHAPES:
        match = shape.pattern.match(message)
        if match is not None:
            store_groups(event, match.groupdict())
            event.update(shape.fixed)
            break
    if event.get("action") == "authentication":
        _failure_pairs(message, event)
    return True


def _failure_pairs(message: str, event: Event) -> None:
    """`logname= uid=0 euid=0 tty=ssh ruser= rhost=10.0.3.1  user=root`."""
    for key, value, _ in key_values(message):
        if not value:
            continue
        if key == "user":
            event["user"] = value
        elif key == "ruser":
            event["src_user"] = value
        elif key == "rhost":
            put_host(event, value)
        elif key in _FAILURE_PAIRS:
            event[_FAILURE_PAIRS[key]] = value


DECODERS = (ProgramDecoder("pam", (), decode_pam),)
