"""Decode the shadow-utils account tools: useradd, userdel, usermod, groupadd, groupdel, passwd."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import (
    Event,
    ProgramDecoder,
    Rule,
    key_values,
    store_groups,
)

_NEW_USER_PAIRS = {
    "name": "user",
    "UID": "uid",
    "GID": "gid",
    "home": "home",
    "shell": "shell",
    "from": "tty",
}
_CHANGED_ATTRIBUTES = {"shell": "shell", "home": "home", "UID": "uid", "GID": "gid"}
_ADDED = {"action": "user_added", "status": "success"}
_MODIFIED = {"action": "user_modified", "status": "success"}

_SHAPES = tuple(
    Rule(re.compile(pattern), fixed)
    for pattern, fixed in (
        (r"new user: (?P<pairs>.*)", _ADDED),
        (r"failed adding user '(?P<user>[^']*)'", {"action": "user_added", "status": "failure"}),
        (
            r"(?:new group|group added to \S+): name=(?P<group>[^,\s]+)(?:, GID=(?P<gid>\d+))?",
            {"action": "group_added", "status": "success"},
        ),
        (
            r"add '(?P<user>[^']*)' to (?:shadow )?group '(?P<group>[^']*)'",
            {"action": "group_member_added", "status": "success"},
        ),
        (
            r"delete '(?P<user>[^']*)' from (?:shadow )?group '(?P<group>[^']*)'",
            {"action": "group_member_removed", "status": "success"},
        ),
        (r"delete user '(?P<user>[^']*)'", {"action": "user_deleted", "status": "success"}),
        (
            r"(?:removed group|group) '(?P<group>[^']*)'(?: owned by '(?P<user>[^']*)')?"
            r"(?: removed)?",
            {"action": "group_deleted", "status": "success"},
        ),
        (
            r"change user '(?P<user>[^']*)' password",
            {"action": "password_changed", "status": "success"},
        ),
        (
            r"password for '(?P<user>[^']*)' changed by '(?P<src_user>[^']*)'",
            {"action": "password_changed", "status": "success"},
        ),
        (
            r"password changed for (?P<user>\S+)",
            {"action": "password_changed", "status": "success"},
        ),
        (r"lock user '(?P<user>[^']*)' password", {"action": "user_locked", "status": "success"}),
        (
            r"unlock user '(?P<user>[^']*)' password",
            {"action": "user_unlocked", "status": "success"},
        ),
        (r"change user name '(?P<old_user>[^']*)' to '(?P<user>[^']*)'", _MODIFIED),
        (
            r"change user '(?P<user>[^']*)' (?P<attribute>\w+) from '(?P<old_value>[^']*)'"
            r" to '(?P<new_value>[^']*)'",
            _MODIFIED,
        ),
    )
)


def decode_account(message: str, event: Event) -> bool:
    """Fill the account, group and change of one shadow-utils message."""
    for shape in _SHAPES:
        match = shape.pattern.match(message)
        if match is not None:
            groups = match.groupdict()
            pairs = groups.pop("pairs", None)
            store_groups(event, groups)
            event.update(shape.fixed)
            if pairs is not None:
                _new_user_pairs(pairs, event)
            _changed_attribute(event)
            break
    return True


def _new_user_pairs(pairs: str, event: Event) -> None:
    """`name=alice, UID=1001, GID=1001, home=/home/alice, shell=/bin/bash, from=/dev/pts/0`."""
    for key, value, _ in key_values(pairs):
        name = _NEW_USER_PAIRS.get(key)
        if name is not None and value:
            event[name] = value


def _changed_attribute(event: Event) -> None:
    name = _CHANGED_ATTRIBUTES.get(event.get("attribute", ""))
    if name is not None and "new_value" in event:
        event[name] = event["new_value"]


DECODERS = tuple(
    ProgramDecoder(program, (program,), decode_account)
    for program in ("useradd", "userdel", "usermod", "groupadd", "groupdel", "passwd")
)
