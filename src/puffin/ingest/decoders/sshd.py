"""Decode OpenSSH server messages: logins, invalid users, disconnections, scans."""

from __future__ import annotations

import re

from puffin.ingest.decoders.fields import (
    Event,
    ProgramDecoder,
    apply_rules,
    index_rules,
    put_host,
    put_int,
)

_LEVEL = re.compile(r"(?:error|fatal|warning|debug\d?|info): ")
_FROM = re.compile(r"\bfrom (?P<host>\S+?)(?:,| port (?P<src_port>\d+)|:? |:?$)")
_PORT = re.compile(r" port (\d+)")
_PREAUTH = " [preauth]"
_USER = r"(?:(?P<invalid>invalid|illegal|authenticating) )?user (?P<user>\S*) "
_RESULTS = {
    "Accepted": ("login", "success"),
    "Failed": ("login", "failure"),
    "Postponed": ("login_postponed", None),
}

RULES = index_rules(
    (
        ("Accepted", "Failed", "Postponed"),
        r"(?P<result>\w+) (?P<auth_method>\S+) for (?:(?P<invalid>invalid|illegal) user )?"
        r"(?P<user>.*?) from (?P<host>\S+) port (?P<src_port>\d+)(?: ssh2?)?"
        r"(?:: (?P<key_type>\S+) (?P<key_fingerprint>\S+))?",
        {},
    ),
    (
        ("Invalid", "Illegal"),
        r"\w+ user (?P<user>.*?) from (?P<host>\S+?)(?: port (?P<src_port>\d+))?$",
        {"action": "invalid_user", "status": "failure", "invalid_user": True},
    ),
    (
        ("input_userauth_request:",),
        r"\S+ (?:invalid|illegal) user (?P<user>\S*)",
        {"action": "invalid_user", "status": "failure", "invalid_user": True},
    ),
    (
        ("PAM:",),
        r"PAM: (?P<reason>.+?) for (?:(?P<invalid>illegal|invalid) user )?(?P<user>\S*)"
        r" from (?P<host>\S+)",
        {"action": "login", "status": "failure", "auth_method": "pam"},
    ),
    (
        ("PAM",),
        r"PAM (?P<count>\d+) more authentication failures?;.*?rhost=(?P<host>\S*)"
        r"\s+user=(?P<user>\S*)",
        {"action": "login", "status": "failure", "auth_method": "pam"},
    ),
    (
        ("maximum",),
        r"maximum authentication attempts exceeded for (?:(?P<invalid>invalid|illegal) user )?"
        r"(?P<user>.*?) from (?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "max_auth_attempts", "status": "failure"},
    ),
    (
        ("Connection",),
        r"Connection from (?P<host>\S+) port (?P<src_port>\d+) on (?P<dst_host>\S+)"
        r" port (?P<dst_port>\d+)",
        {"action": "connection_opened"},
    ),
    (
        ("Connection",),
        rf"Connection (?P<action>closed|reset) by (?:{_USER})?(?P<host>\S+) port (?P<src_port>\d+)",
        {},
    ),
    (
        ("Disconnected",),
        rf"Disconnected from (?:{_USER})?(?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "disconnected"},
    ),
    (
        ("Disconnecting",),
        rf"Disconnecting (?:{_USER})?(?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "disconnected"},
    ),
    (
        ("Received",),
        r"Received disconnect from (?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "disconnected"},
    ),
    (
        ("Received",),
        r"Received signal (?P<signal>\d+); terminating",
        {"action": "service_stopped"},
    ),
    (
        ("Did",),
        r"Did not receive identification string from (?P<host>\S+?)(?: port (?P<src_port>\d+))?$",
        {"action": "no_identification"},
    ),
    (
        ("Bad",),
        r"Bad protocol version identification '(?P<client_version>.*)' from (?P<host>\S+?)"
        r"(?: port (?P<src_port>\d+))?$",
        {"action": "bad_protocol"},
    ),
    (
        ("User",),
        r"User (?P<user>\S+) from (?P<host>\S+) not allowed because (?P<reason>.+)",
        {"action": "user_not_allowed", "status": "failure"},
    ),
    (
        ("Address",),
        r"Address (?P<host>\S+) maps to (?P<src_host>[^\s,]+), but this does not map back",
        {"action": "reverse_mapping_failed"},
    ),
    (
        ("reverse",),
        r"reverse mapping checking getaddrinfo for (?P<src_host>\S+) \[(?P<host>[^\]]+)\] failed",
        {"action": "reverse_mapping_failed"},
    ),
    (
        ("Unable",),
        r"Unable to negotiate with (?P<host>\S+?)(?: port (?P<src_port>\d+))?: (?P<reason>.+)",
        {"action": "negotiation_failed", "status": "failure"},
    ),
    (
        ("Read",),
        r"Read error from remote host (?P<host>\S+?)(?: port (?P<src_port>\d+))?: (?P<reason>.+)",
        {"action": "connection_reset"},
    ),
    (
        ("Timeout",),
        r"Timeout before authentication for (?:connection from )?(?P<host>\S+?)"
        r"(?: to \S+)?(?: port (?P<src_port>\d+))?$",
        {"action": "timeout"},
    ),
    (
        ("subsystem",),
        r"subsystem request for (?P<ssh_subsystem>\S+) by user (?P<user>\S+) failed",
        {"action": "subsystem_failed", "status": "failure"},
    ),
    (
        ("Authentication",),
        r"Authentication refused: (?P<reason>.+)",
        {"action": "login", "status": "failure"},
    ),
    (
        ("Starting",),
        r"Starting session: (?P<session_type>.+?) (?:on (?P<tty>\S+) )?for (?P<user>\S+)"
        r" from (?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "session_opened"},
    ),
    (
        ("Close",),
        r"Close session: user (?P<user>\S+) from (?P<host>\S+) port (?P<src_port>\d+)",
        {"action": "session_closed"},
    ),
    (
        ("Server",),
        r"Server listening on (?P<dst_host>\S+) port (?P<dst_port>\d+)",
        {"action": "service_started"},
    ),
)


def decode_sshd(message: str, event: Event) -> bool:
    """Fill login fields; every sshd message is ours, known shape or not."""
    text = message.removesuffix(_PREAUTH)
    level = _LEVEL.match(text)
    if level is not None:
        text = text[level.end() :]
    if apply_rules(RULES, text, event):
        _settle(event)
    if "src_ip" not in event and "src_host" not in event:
        _any_source(text, event)
    return True


def _settle(event: Event) -> None:
    """Turn the helper groups into the common fields."""
    result = event.pop("result", None)
    if result in _RESULTS:
        action, status = _RESULTS[result]
        event["action"] = action
        if status is not None:
            event["status"] = status
    kind = event.pop("invalid", None)
    if kind in ("invalid", "illegal"):
        event["invalid_user"] = True
    if event.get("action") in ("closed", "reset"):
        event["action"] = f"connection_{event['action']}"
    if event.get("action") == "disconnected" and "user" in event and not kind:
        event["action"] = "logout"


def _any_source(text: str, event: Event) -> None:
    """For shapes without a rule: take the address after "from", and its port."""
    found = _FROM.search(text)
    if found is None:
        return
    put_host(event, found.group("host"))
    port = found.group("src_port") or next(iter(_PORT.findall(text[found.end() :])), None)
    if "src_ip" in event:
        put_int(event, "src_port", port)


DECODERS = (ProgramDecoder("sshd", ("sshd", "ssh"), decode_sshd),)
