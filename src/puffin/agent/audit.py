"""Tailing the Linux audit log and assembling its records into one event per audit serial.

The kernel writes one audit event as several records sharing `msg=audit(TIME:SERIAL)`
(SYSCALL, EXECVE, CWD, PATH, PROCTITLE, …, sometimes closed by EOE). Records with the
same id become one event, written when EOE arrives, when a record with another id
arrives, or when no record came for `flush_seconds`. The event carries:

- `module: "auditd"`, `audit_id` ("1700000000.123:4242"), `audit_types` (record types
  in order; also under Sigma's name `type`), `timestamp` (ISO UTC), `node` if present;
- the fields of the SYSCALL record (or, without one, of the first record), values as
  text, quotes removed, enriched fields (`SYSCALL`, `AUID`, `UID`… after the 0x1D
  separator) kept as written; `SYSCALL` is named from a small table when the log is raw;
- `command` (EXECVE's argv joined by spaces, hex-encoded arguments decoded, long
  arguments reassembled), and the arguments as `a0`, `a1`… as Sigma's auditd rules
  expect (the SYSCALL's own register values then move to `syscall_a0`…`syscall_a3`);
- `cwd`, `paths` (PATH names; also under Sigma's name `name`), `proctitle` decoded,
  other records' fields when they do not clash, and `full_log`: the raw records.

The saved position (inode and offset) only moves past records whose event was written:
a restart re-reads the records of an event still being assembled. Rotation by rename
(auditd's `audit.log` → `audit.log.1`) is followed like the file tailer does, and a
rotation while the agent was stopped is caught up from `audit.log.1`.
"""

from __future__ import annotations

import os
import re
import string
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from puffin.agent.files import MAX_LINE, MAX_READ
from puffin.agent.outbox import Outbox

DEFAULT_PATH = "/var/log/audit/audit.log"
FLUSH_SECONDS = 2.0
MAX_GROUP_RECORDS = 500
RETRY_SECONDS = 60.0
HEADER = re.compile(
    r"(?:node=(?P<node>\S+) )?type=(?P<type>\S+) "
    r"msg=audit\((?P<time>\d+(?:\.\d+)?):(?P<serial>\d+)\):\s?(?P<body>.*)",
    re.DOTALL,
)
PAIR = re.compile(r"([A-Za-z0-9_\-\[\]]+)=(\"[^\"]*\"|'[^']*'|\S*)")
EXECVE_ARGUMENT = re.compile(r"a(\d+)(?:\[(\d+)\])?")
ENCODED = {"proctitle", "name", "cwd", "exe", "comm", "cmd", "path", "key", "data", "old", "new"}
SYSCALL_ARGUMENTS = ("a0", "a1", "a2", "a3")
SYSCALL_NAMES = {
    "c000003e": {  # x86_64
        "2": "open", "41": "socket", "42": "connect", "43": "accept", "49": "bind",
        "56": "clone", "57": "fork", "58": "vfork", "59": "execve", "62": "kill",
        "76": "truncate", "77": "ftruncate", "82": "rename", "85": "creat", "87": "unlink",
        "90": "chmod", "91": "fchmod", "92": "chown", "99": "sysinfo", "101": "ptrace",
        "103": "syslog", "105": "setuid", "106": "setgid", "113": "setreuid",
        "117": "setresuid", "133": "mknod", "135": "personality", "165": "mount",
        "166": "umount2", "169": "reboot", "170": "sethostname", "175": "init_module",
        "176": "delete_module", "257": "openat", "259": "mknodat", "260": "fchownat",
        "263": "unlinkat", "264": "renameat", "268": "fchmodat", "310": "process_vm_readv",
        "311": "process_vm_writev", "313": "finit_module", "319": "memfd_create",
        "321": "bpf", "322": "execveat",
    },
    "c00000b7": {  # aarch64
        "33": "mknodat", "35": "unlinkat", "38": "renameat", "39": "umount2", "40": "mount",
        "53": "fchmodat", "54": "fchownat", "56": "openat", "105": "init_module",
        "106": "delete_module", "116": "syslog", "117": "ptrace", "129": "kill",
        "142": "reboot", "146": "setuid", "179": "sysinfo", "198": "socket", "200": "bind",
        "202": "accept", "203": "connect", "220": "clone", "221": "execve",
        "273": "finit_module", "279": "memfd_create", "280": "bpf", "281": "execveat",
    },
}  # fmt: skip


@dataclass
class AuditRecord:
    """One line of the audit log, parsed."""

    type: str
    audit_id: str
    time: float
    fields: dict[str, str]
    enriched: dict[str, str]
    raw: str
    node: str = ""


@dataclass
class _Group:
    """Records of one audit id still being assembled, and where the first one starts."""

    audit_id: str
    start: int
    seen: float
    records: list[AuditRecord] = field(default_factory=list)


def _utc(seconds: float) -> str:
    when = datetime.fromtimestamp(seconds, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_hex(text: str) -> bool:
    return bool(text) and len(text) % 2 == 0 and all(c in string.hexdigits for c in text)


def _decode(key: str, raw: str, encoded: bool) -> str:
    """Return a field's value: quotes removed, hex decoded where audit encodes it."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        return raw[1:-1]
    if encoded and _is_hex(raw):
        return bytes.fromhex(raw).decode("utf-8", errors="replace")
    return raw


def _pairs(text: str, record_type: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for key, raw in PAIR.findall(text):
        if key == "msg" and raw.startswith("'"):
            fields.update(_pairs(raw[1:-1], record_type))  # USER_* records nest their fields
            continue
        argument = record_type == "EXECVE" and EXECVE_ARGUMENT.fullmatch(key) is not None
        fields[key] = _decode(key, raw, encoded=argument or key in ENCODED)
    return fields


def parse_record(line: str) -> AuditRecord | None:
    """Parse one audit line (`type=… msg=audit(TIME:SERIAL): …`); None if it is not one."""
    match = HEADER.fullmatch(line.strip())
    if match is None:
        return None
    record_type = match["type"]
    body, _, enriched = match["body"].partition("\x1d")
    return AuditRecord(
        type=record_type,
        audit_id=f"{match['time']}:{match['serial']}",
        time=float(match["time"]),
        fields=_pairs(body, record_type),
        enriched=_pairs(enriched, ""),
        raw=line,
        node=match["node"] or "",
    )


def _execve_arguments(records: list[AuditRecord]) -> list[str]:
    """Return argv from EXECVE records, joining arguments the kernel split in chunks."""
    whole: dict[int, str] = {}
    chunks: dict[int, dict[int, str]] = {}
    for record in records:
        for key, value in record.fields.items():
            match = EXECVE_ARGUMENT.fullmatch(key)
            if match is None:
                continue
            index = int(match[1])
            if match[2] is None:
                whole[index] = value
            else:
                chunks.setdefault(index, {})[int(match[2])] = value
    for index, parts in chunks.items():
        whole[index] = "".join(parts[i] for i in sorted(parts))
    return [whole[i] for i in sorted(whole)]


def _syscall_name(fields: Mapping[str, str]) -> str | None:
    return SYSCALL_NAMES.get(fields.get("arch", ""), {}).get(fields.get("syscall", ""))


def _base_fields(records: list[AuditRecord]) -> dict[str, Any]:
    primary = next((r for r in records if r.type == "SYSCALL"), records[0])
    event: dict[str, Any] = {**primary.fields, **primary.enriched}
    if primary.type == "SYSCALL" and "SYSCALL" not in event:
        name = _syscall_name(primary.fields)
        if name:
            event["SYSCALL"] = name
    for record in records:
        if record is primary or record.type in ("EXECVE", "PATH", "CWD", "PROCTITLE"):
            continue
        for key, value in {**record.fields, **record.enriched}.items():
            event.setdefault(key, value)
    return event


def build_event(records: list[AuditRecord]) -> dict[str, Any]:
    """Assemble the records of one audit id into one event."""
    types = list(dict.fromkeys(record.type for record in records))
    event = _base_fields(records)
    argv = _execve_arguments([r for r in records if r.type == "EXECVE"])
    if argv:
        for key in SYSCALL_ARGUMENTS:
            if key in event:
                event[f"syscall_{key}"] = event.pop(key)
        event.update({f"a{index}": value for index, value in enumerate(argv)})
        event["command"] = " ".join(argv)
    cwd = next((r.fields["cwd"] for r in records if r.type == "CWD" and "cwd" in r.fields), None)
    if cwd is not None:
        event["cwd"] = cwd
    paths = [r.fields["name"] for r in records if r.type == "PATH" and "name" in r.fields]
    if paths:
        event["paths"] = event["name"] = paths
    for record in records:
        if record.type == "PROCTITLE" and "proctitle" in record.fields:
            event["proctitle"] = record.fields["proctitle"].replace("\x00", " ").strip()
    first = records[0]
    syscall = f" {event['SYSCALL']}" if "SYSCALL" in event else ""
    event.update(
        module="auditd",
        title=f"Linux audit {types[0]}{syscall}",
        audit_id=first.audit_id,
        audit_types=types,
        type=types,
        timestamp=_utc(first.time),
        full_log="\n".join(record.raw for record in records),
    )
    if first.node:
        event["node"] = first.node
    return event


def _unparsed_event(line: str) -> dict[str, Any]:
    return {
        "module": "auditd",
        "title": "Unparsed audit line",
        "full_log": line,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Assembler:
    """Groups records by audit id; returns finished events and where unfinished ones start."""

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.flush_seconds = flush_seconds
        self.pending: _Group | None = None

    def feed(self, line: str, offset: int, now: float) -> list[dict[str, Any]]:
        """Take one complete line starting at `offset`; return the events it finished."""
        record = parse_record(line)
        if record is None:
            return [*self.flush(), _unparsed_event(line)]
        done: list[dict[str, Any]] = []
        if self.pending is not None and self.pending.audit_id != record.audit_id:
            done += self.flush()
        if self.pending is None:
            self.pending = _Group(record.audit_id, offset, now)
        self.pending.records.append(record)
        self.pending.seen = now
        if record.type == "EOE" or len(self.pending.records) >= MAX_GROUP_RECORDS:
            done += self.flush()
        return done

    def flush(self) -> list[dict[str, Any]]:
        """Finish the event being assembled, if any."""
        group, self.pending = self.pending, None
        if group is None:
            return []
        records = [r for r in group.records if r.type != "EOE"] or group.records
        return [build_event(records)]

    def expire(self, now: float) -> list[dict[str, Any]]:
        """Finish the pending event when no record came for `flush_seconds`."""
        if self.pending is not None and now - self.pending.seen >= self.flush_seconds:
            return self.flush()
        return []


class AuditCollector:
    """Follows audit.log through rotation and writes assembled events with safe positions."""

    name = "auditd"

    def __init__(self, path: str = DEFAULT_PATH, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.path = path
        self.assembler = Assembler(flush_seconds)
        self._handle: BinaryIO | None = None
        self._inode = -1
        self._offset = 0
        self._retry_at = 0.0
        self._last_notice = ""
        self._saved_position = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state_dir: Path) -> AuditCollector:
        """Build from `{"path": "/var/log/audit/audit.log", "flush_seconds": 2}`."""
        return cls(
            path=str(config.get("path", DEFAULT_PATH)),
            flush_seconds=float(config.get("flush_seconds", FLUSH_SECONDS)),
        )

    @property
    def source(self) -> str:
        """The outbox position key of the audit log."""
        return f"audit:{self.path}"

    def collect(self, outbox: Outbox, now: float) -> int:
        """Read new records, write finished events and the position they allow."""
        if self._handle is None and now < self._retry_at:
            return 0
        try:
            inode = os.stat(self.path).st_ino
        except OSError as error:
            if self._handle is None:
                return self._unavailable(outbox, now, error)
            inode = self._inode  # renamed away a moment ago: finish what is open first
        events: list[dict[str, Any]] = []
        if self._handle is not None and inode != self._inode:
            events += self._finish_rotated(now)
        if self._handle is None:
            try:
                events += self._open(outbox, inode, now)
            except OSError as error:
                return (outbox.add(events) if events else 0) + self._unavailable(outbox, now, error)
        events += self._read(now, rotated=False)
        events += self.assembler.expire(now)
        position = self._position()
        if not events and position == self._saved_position:
            return 0  # nothing new: no write (and no fsync) on this turn
        self._saved_position = position
        return outbox.add(events, {self.source: position})

    def _position(self) -> str:
        pending = self.assembler.pending
        return f"{self._inode}:{pending.start if pending else self._offset}"

    def _unavailable(self, outbox: Outbox, now: float, error: OSError) -> int:
        """Say once why the log cannot be read (missing, not root), then retry quietly."""
        self._retry_at = now + RETRY_SECONDS
        reason = error.strerror or type(error).__name__
        if reason == self._last_notice:
            return 0
        self._last_notice = reason
        notice = {
            "module": "auditd",
            "title": "audit log unreadable",
            "full_log": f"auditd: cannot read {self.path}: {reason}; retrying every minute",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return outbox.add([notice])

    def _open(self, outbox: Outbox, inode: int, now: float) -> list[dict[str, Any]]:
        """Open the log where the saved position says (on the first open) or at 0."""
        first_open = self._inode == -1
        saved_inode, saved_offset = _saved(outbox.position(self.source) if first_open else None)
        events: list[dict[str, Any]] = []
        if saved_inode not in (-1, inode):
            events += self._catch_up_rotated(saved_inode, saved_offset, now)
            saved_offset = 0
        self._handle = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        self._inode = inode
        self._offset = saved_offset
        self._last_notice = ""
        return events

    def _catch_up_rotated(self, inode: int, offset: int, now: float) -> list[dict[str, Any]]:
        """Read the rest of the file we were reading before a rotation while stopped."""
        rotated = f"{self.path}.1"
        try:
            if os.stat(rotated).st_ino != inode:
                return []
            self._handle = open(rotated, "rb")  # noqa: SIM115 - closed by _finish_rotated
        except OSError:
            return []
        self._inode, self._offset = inode, offset
        return self._finish_rotated(now)

    def _finish_rotated(self, now: float) -> list[dict[str, Any]]:
        events = self._read(now, rotated=True) + self.assembler.flush()
        self._close_handle()
        self._offset = 0
        return events

    def _read(self, now: float, *, rotated: bool) -> list[dict[str, Any]]:
        handle = self._handle
        if handle is None:
            return []
        events: list[dict[str, Any]] = []
        if os.fstat(handle.fileno()).st_size < self._offset:
            events += self.assembler.flush()  # truncated in place: start again at 0
            self._offset = 0
        handle.seek(self._offset)
        data = handle.read(MAX_READ)
        end = len(data) if rotated else data.rfind(b"\n") + 1
        for line, start in _lines(data[:end], self._offset):
            events += self.assembler.feed(line, start, now)
        self._offset += end
        return events

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = None

    def close(self) -> None:
        """Close the log; an event still being assembled is re-read on the next start."""
        self._close_handle()


def _saved(value: str | None) -> tuple[int, int]:
    if not value:
        return (-1, 0)
    inode, _, offset = value.partition(":")
    return int(inode), int(offset)


def _lines(data: bytes, base: int) -> Iterator[tuple[str, int]]:
    """Yield each non-empty line with the file offset where it starts."""
    position = 0
    for raw in data.split(b"\n"):
        start = base + position
        position += len(raw) + 1
        if raw.strip():
            yield raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r"), start
