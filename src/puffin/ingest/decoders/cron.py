"""Decode cron and crontab messages: `(user) CMD (command)` and crontab edits."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import Event, ProgramDecoder

_LINE = re.compile(r"\((?P<who>[^)]*)\) (?P<verb>[A-Z][A-Z ]*?) \((?P<detail>.*)\)\s*$", re.DOTALL)
# Verbs where the second parenthesis names the crontab's owner.
_CRONTAB_VERBS = {
    "REPLACE": "crontab_replaced",
    "BEGIN EDIT": "crontab_edit_started",
    "END EDIT": "crontab_edit_ended",
    "DELETE": "crontab_deleted",
    "LIST": "crontab_listed",
}
_COMMAND_VERBS = {"CMD": "cron_command", "CMDEND": "cron_command_ended"}


def decode_cron(message: str, event: Event) -> bool:
    """Fill who ran which command, or who changed whose crontab."""
    match = _LINE.match(message)
    if match is None:
        return True
    who, verb, detail = match.group("who"), match.group("verb"), match.group("detail")
    if verb in _COMMAND_VERBS:
        event["user"] = who
        event["command"] = detail.strip()
        event["action"] = _COMMAND_VERBS[verb]
    elif verb in _CRONTAB_VERBS:
        event["src_user"] = who
        event["user"] = detail
        event["action"] = _CRONTAB_VERBS[verb]
    else:
        event["action"] = "cron_" + verb.lower().replace(" ", "_")
    return True


DECODERS = (ProgramDecoder("cron", ("cron", "crond", "crontab", "anacron"), decode_cron),)
