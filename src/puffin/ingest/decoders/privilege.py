"""Decode sudo and su: who ran what as whom, on which terminal, and whether it was allowed."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import Event, ProgramDecoder, store_groups

_SUDO = re.compile(r"\s*(?P<src_user>[^\s:]+) : (?P<rest>.*)", re.DOTALL)
_SUDO_FIELDS = {"TTY": "tty", "PWD": "pwd", "USER": "dst_user", "GROUP": "dst_group"}

_SU_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), status)
    for pattern, status in (
        (r"BAD SU (?P<src_user>\S+) to (?P<dst_user>\S+)(?: on (?P<tty>\S+))?", "failure"),
        (r"failed: (?P<tty>\S+) changing from (?P<src_user>\S+) to (?P<dst_user>\S+)", "failure"),
        (r"FAILED SU \(to (?P<dst_user>[^)\s]+)\) (?P<src_user>\S+) on (?P<tty>\S+)", "failure"),
        (r"FAILED su for (?P<dst_user>\S+) by (?P<src_user>\S+)", "failure"),
        (r"- (?P<tty>\S+) (?P<src_user>[^\s:]+):(?P<dst_user>\S+)$", "failure"),
        (r"pam_authenticate: (?P<reason>.+)", "failure"),
        (r"'su (?P<dst_user>\S+)' failed for (?P<src_user>\S+) on (?P<tty>\S+)", "failure"),
        (r"\(to (?P<dst_user>[^)\s]+)\) (?P<src_user>\S+) on (?P<tty>\S+)", "success"),
        (r"Successful su for (?P<dst_user>\S+) by (?P<src_user>\S+)", "success"),
        (r"\+ (?P<tty>\S+) (?P<src_user>[^\s:]+):(?P<dst_user>\S+)$", "success"),
        (r"(?P<src_user>\S+) to (?P<dst_user>\S+) on (?P<tty>\S+)$", "success"),
    )
)


def decode_sudo(message: str, event: Event) -> bool:
    """`alice : [reason ;] TTY=… ; PWD=… ; USER=root ; COMMAND=…`."""
    match = _SUDO.match(message)
    if match is None:
        return True
    event["src_user"] = match.group("src_user")
    rest, _, command = match.group("rest").partition(" ; COMMAND=")
    if not command and rest.startswith("COMMAND="):
        rest, command = "", rest.removeprefix("COMMAND=")
    reasons = [part for part in rest.split(" ; ") if not _sudo_pair(part, event)]
    if command:
        event["command"] = command
    event["action"] = "sudo"
    event["status"] = "failure" if reasons else "success"
    if reasons:
        event["reason"] = " ; ".join(reasons)
    if "dst_user" in event:
        event["user"] = event["dst_user"]
    return True


def _sudo_pair(part: str, event: Event) -> bool:
    key, equals, value = part.partition("=")
    if not equals or not key.isupper():
        return False
    name = _SUDO_FIELDS.get(key)
    if name is not None:
        event[name] = value
    return True


def decode_su(message: str, event: Event) -> bool:
    """Old BSD, util-linux and shadow-utils su lines."""
    for pattern, status in _SU_SHAPES:
        match = pattern.match(message)
        if match is not None:
            store_groups(event, match.groupdict())
            event["action"] = "su"
            event["status"] = status
            if "dst_user" in event:
                event["user"] = event["dst_user"]
            break
    return True


DECODERS = (
    ProgramDecoder("sudo", ("sudo",), decode_sudo),
    ProgramDecoder("su", ("su",), decode_su),
)
