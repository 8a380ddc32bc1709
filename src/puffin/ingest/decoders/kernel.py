"""Decode kernel messages: iptables/UFW packet logs, audit records (AppArmor, SELinux),
USB devices, promiscuous interfaces, killed and crashed processes."""

from __future__ import annotations

import re

from puffin.ingest.decoders.auditd import decode_audit
from puffin.ingest.decoders.fields import Event, ProgramDecoder, Rule, put_int, store_groups

_UPTIME = re.compile(r"\[ *\d+\.\d+\] ?")
_PACKET = re.compile(r"\b(IN|OUT|MAC|SRC|DST|SPT|DPT|PROTO)=(\S*)")
_PACKET_FIELDS = {
    "IN": "in_interface",
    "OUT": "out_interface",
    "MAC": "mac",
    "SRC": "src_ip",
    "DST": "dst_ip",
    "PROTO": "protocol",
}
_PACKET_PORTS = {"SPT": "src_port", "DPT": "dst_port"}
_BLOCK_WORDS = ("DROP", "BLOCK", "REJECT", "DENY", "DENIED")
_ALLOW_WORDS = ("ACCEPT", "ALLOW", "PASS")

_SHAPES = tuple(
    Rule(re.compile(pattern), fixed)
    for pattern, fixed in (
        (
            r"usb (?P<usb_port>\S+): New USB device found, idVendor=(?P<usb_vendor_id>\w+),"
            r" idProduct=(?P<usb_product_id>\w+)",
            {"action": "usb_connected"},
        ),
        (
            r"usb (?P<usb_port>\S+): USB disconnect, device number (?P<usb_device>\d+)",
            {"action": "usb_disconnected"},
        ),
        (r"usb (?P<usb_port>\S+): Product: (?P<usb_product>.+)", {"action": "usb_described"}),
        (r"usb (?P<usb_port>\S+): Manufacturer: (?P<usb_vendor>.+)", {"action": "usb_described"}),
        (r"usb (?P<usb_port>\S+): SerialNumber: (?P<usb_serial>.+)", {"action": "usb_described"}),
        (
            r"device (?P<interface>\S+) entered promiscuous mode",
            {"action": "promiscuous_mode_on"},
        ),
        (r"device (?P<interface>\S+) left promiscuous mode", {"action": "promiscuous_mode_off"}),
        (
            r"(?:Out of memory: )?Kill(?:ed)? process (?P<process_id>\d+)"
            r" \((?P<process_name>[^)]*)\)",
            {"action": "process_killed"},
        ),
        (
            r"(?P<process_name>[^\s\[]+)\[(?P<process_id>\d+)\]: segfault at",
            {"action": "segfault"},
        ),
    )
)


def decode_kernel(message: str, event: Event) -> bool:
    """Every kernel message is ours; known shapes get their fields."""
    uptime = _UPTIME.match(message)
    body = message[uptime.end() :] if uptime else message
    if "audit(" in body and decode_audit(body, event):
        return True
    if "SRC=" in body and "DST=" in body:
        _packet(body, event)
        return True
    for shape in _SHAPES:
        match = shape.pattern.match(body)
        if match is not None:
            store_groups(event, match.groupdict())
            event.update(shape.fixed)
            break
    return True


def _packet(body: str, event: Event) -> None:
    """`[UFW BLOCK] IN=eth0 OUT= SRC=… DST=… PROTO=TCP SPT=… DPT=…`."""
    first = None
    for match in _PACKET.finditer(body):
        key, value = match.group(1), match.group(2)
        first = match.start() if first is None else first
        if key in _PACKET_PORTS:
            put_int(event, _PACKET_PORTS[key], value)
        elif value and _PACKET_FIELDS[key] not in event:
            event[_PACKET_FIELDS[key]] = value
    prefix = body[:first].strip(" :[]") if first else ""
    if prefix:
        event["log_prefix"] = prefix
    event["action"] = _packet_action(prefix.upper())


def _packet_action(prefix: str) -> str:
    if any(word in prefix for word in _BLOCK_WORDS):
        return "block"
    if any(word in prefix for word in _ALLOW_WORDS):
        return "allow"
    return "packet_logged"


DECODERS = (ProgramDecoder("kernel", ("kernel",), decode_kernel),)
