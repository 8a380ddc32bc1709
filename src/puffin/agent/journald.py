"""Following the systemd journal through `journalctl -o json --follow`, with a saved cursor.

Each journal entry becomes one event: `module: "journald"`, `unit` (`_SYSTEMD_UNIT`),
`program` (`SYSLOG_IDENTIFIER`, else `_COMM`), `pid` (`_PID`), `hostname` (`_HOSTNAME`),
`message` (`MESSAGE`), `priority`, `facility`, `uid`, `comm`, `exe`, `transport`, the
entry's time as `timestamp` (ISO UTC), and a `full_log` written like a classic syslog
line ("Nov 14 22:13:20 host sshd[812]: message", in UTC) so the server's syslog
decoders read it as they read `/var/log/syslog`. The entry's cursor is saved as the
position in the same transaction as the events, and journalctl restarts after it.

`journalctl` is found on PATH and is never taken from the configuration: the server may
choose units and matches, never what runs. Missing journalctl, a refused cursor, lack of
permission (journalctl's own warning on stderr) and a journalctl that stops are each
reported once as an event; the collector then waits and retries, never raising.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from puffin.agent.outbox import Outbox

POSITION = "journald"
MAX_READ = 4 * 1024 * 1024
MAX_LINE = 256 * 1024
MAX_MESSAGE = 64 * 1024
MAX_STDERR = 4096
RESTART_SECONDS = 5.0
MAX_RESTART_SECONDS = 300.0
HEALTHY_RUN_SECONDS = 60.0
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MATCH = re.compile(r"[A-Z0-9_]+=.*|\+")
UNIT = re.compile(r"[A-Za-z0-9:_.@\\*?\[\]-]+")
NUMERIC_FIELDS = {
    "_PID": "pid",
    "PRIORITY": "priority",
    "SYSLOG_FACILITY": "facility",
    "_UID": "uid",
    "_GID": "gid",
}
TEXT_FIELDS = {
    "_SYSTEMD_UNIT": "unit",
    "_HOSTNAME": "hostname",
    "MESSAGE": "message",
    "_COMM": "comm",
    "_EXE": "exe",
    "_CMDLINE": "cmdline",
    "_TRANSPORT": "transport",
    "_BOOT_ID": "boot_id",
    "SYSLOG_IDENTIFIER": "program",
}


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _notice(title: str, detail: str) -> dict[str, Any]:
    return {
        "module": "journald",
        "title": title,
        "full_log": f"journald: {title}: {detail}" if detail else f"journald: {title}",
        "timestamp": _utc_now(),
    }


def _text(value: Any) -> str | None:
    """Return a journal field as text: journalctl writes binary values as byte arrays,
    repeated fields as arrays of values, and fields over 4 KiB as null."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(b, int) for b in value):
        return bytes(b & 0xFF for b in value).decode("utf-8", errors="replace")
    if isinstance(value, list) and value:
        return _text(value[0])
    return str(value)


def _number(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text is not None and text.isdigit() else None


def _entry_time(entry: Mapping[str, Any]) -> datetime:
    micros = _number(entry.get("__REALTIME_TIMESTAMP"))
    if micros is None:
        return datetime.now(UTC)
    return datetime.fromtimestamp(micros / 1_000_000, UTC)


def syslog_line(when: datetime, host: str, program: str, pid: int | None, message: str) -> str:
    """Return an RFC 3164-style line, the shape the server's syslog decoders expect."""
    stamp = f"{MONTHS[when.month - 1]} {when.day:>2} {when:%H:%M:%S}"
    tag = f"{program}[{pid}]" if pid is not None else program
    return f"{stamp} {host or '-'} {tag or '-'}: {message}"


def entry_event(entry: Mapping[str, Any]) -> dict[str, Any]:
    """Turn one journal entry (journalctl's JSON object) into an event."""
    event: dict[str, Any] = {"module": "journald", "location": "journald"}
    for field, name in TEXT_FIELDS.items():
        text = _text(entry.get(field))
        if text is not None:
            event[name] = text
    for field, name in NUMERIC_FIELDS.items():
        number = _number(entry.get(field))
        if number is not None:
            event[name] = number
    if "pid" not in event and (pid := _number(entry.get("SYSLOG_PID"))) is not None:
        event["pid"] = pid
    event.setdefault("program", event.get("comm", ""))
    message = str(event.get("message", ""))[:MAX_MESSAGE]
    event["message"] = message
    when = _entry_time(entry)
    event["timestamp"] = when.isoformat().replace("+00:00", "Z")
    event["full_log"] = syslog_line(
        when, str(event.get("hostname", "")), str(event["program"]), event.get("pid"), message
    )
    return event


class JournaldCollector:
    """Runs journalctl as a child process and reads its JSON lines without blocking."""

    name = "journald"

    def __init__(
        self, *, units: list[str], matches: list[str], problems: list[str] | None = None
    ) -> None:
        self.units = units
        self.matches = matches
        self._problems = list(problems or [])
        self._process: subprocess.Popen[bytes] | None = None
        self._stdout_fd = -1
        self._stderr_fd = -1
        self._buffer = b""
        self._stderr = b""
        self._started_at = 0.0
        self._restart_at = 0.0
        self._backoff = RESTART_SECONDS
        self._cursor_refused = False
        self._used_cursor = False
        self._disabled = False
        self._last_notice = ""

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state_dir: Path) -> JournaldCollector:
        """Build from `{"units": ["ssh.service"], "matches": ["_TRANSPORT=kernel"]}`.

        Entries that are not a unit name or a `FIELD=value` match are left out and
        reported as an event, so nothing from the configuration can become an option.
        """
        units, problems = _valid(config.get("units", []), UNIT, "unit")
        matches, more = _valid(config.get("matches", []), MATCH, "match")
        return cls(units=units, matches=matches, problems=problems + more)

    @property
    def running(self) -> bool:
        """Whether journalctl is running now."""
        return self._process is not None and self._process.poll() is None

    def argv(self, cursor: str | None) -> list[str]:
        """Return journalctl's arguments: follow after the cursor, or from now."""
        argv = ["journalctl", "--output=json", "--follow", "--no-pager"]
        argv.append(f"--after-cursor={cursor}" if cursor else "--since=now")
        argv += [f"--unit={unit}" for unit in self.units]
        return argv + self.matches

    def collect(self, outbox: Outbox, now: float) -> int:
        """Write the entries journalctl printed since the last call."""
        notices = [_notice("configuration entry ignored", p) for p in self._problems]
        self._problems.clear()
        if self._disabled:
            return outbox.add(notices) if notices else 0
        if self._process is None and now >= self._restart_at:
            notices += self._start(outbox, now)
        if self._process is None:
            return outbox.add(notices) if notices else 0
        code = self._process.poll()
        events, cursor = self._read_entries(until_end=code is not None)
        notices += self._report_stderr() if code is None else self._report_exit(code, now)
        if cursor:
            self._cursor_refused = False  # a fresh cursor is good for the next restart
        positions = {POSITION: cursor} if cursor else None
        return outbox.add(notices + events, positions) if notices or positions else 0

    def _start(self, outbox: Outbox, now: float) -> list[dict[str, Any]]:
        executable = shutil.which("journalctl")
        if executable is None:
            self._disabled = True
            return [_notice("journalctl not found", "journald collection is off on this host")]
        cursor = None if self._cursor_refused else outbox.position(POSITION)
        argv = self.argv(cursor)
        try:
            self._process = subprocess.Popen(  # noqa: S603 - fixed program, checked arguments
                [executable, *argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as error:
            self._schedule_restart(now)
            return self._once("journalctl could not start", str(error))
        self._stdout_fd = _nonblocking(self._process.stdout)
        self._stderr_fd = _nonblocking(self._process.stderr)
        self._used_cursor = cursor is not None
        self._started_at = now
        self._buffer = b""
        self._stderr = b""
        return []

    def _read_entries(self, *, until_end: bool) -> tuple[list[dict[str, Any]], str | None]:
        limit = MAX_READ * 16 if until_end else MAX_READ
        self._buffer += _read_available(self._stdout_fd, limit)
        complete, _, self._buffer = self._buffer.rpartition(b"\n")
        if len(self._buffer) > MAX_LINE:
            self._buffer = b""  # an entry this long is not a log line; skip it
        events: list[dict[str, Any]] = []
        cursor = None
        for raw in complete.split(b"\n"):
            entry = _parse(raw)
            if entry is None:
                continue
            events.append(entry_event(entry))
            cursor = _text(entry.get("__CURSOR")) or cursor
        return events, cursor

    def _read_stderr(self) -> None:
        more = _read_available(self._stderr_fd, 65536)
        self._stderr = (self._stderr + more)[-MAX_STDERR:]

    def _report_stderr(self) -> list[dict[str, Any]]:
        """Report what journalctl wrote on stderr (a permission warning, say) once."""
        self._read_stderr()
        if not self._stderr.endswith(b"\n"):
            return []
        text = self._stderr.decode("utf-8", errors="replace").strip()
        self._stderr = b""
        return self._once("journalctl reported a problem", text) if text else []

    def _report_exit(self, code: int, now: float) -> list[dict[str, Any]]:
        self._read_stderr()
        tail = self._stderr.decode("utf-8", errors="replace").strip()
        self._release()
        if self._used_cursor and "cursor" in tail.lower():
            self._cursor_refused = True  # a damaged cursor: follow from now instead
            return self._once("saved journal cursor refused; following from now", tail)
        if now - self._started_at >= HEALTHY_RUN_SECONDS:
            self._backoff = RESTART_SECONDS
        self._schedule_restart(now)
        return self._once(f"journalctl stopped (exit code {code})", tail)

    def _schedule_restart(self, now: float) -> None:
        self._restart_at = now + self._backoff
        self._backoff = min(self._backoff * 2, MAX_RESTART_SECONDS)

    def _once(self, title: str, detail: str) -> list[dict[str, Any]]:
        """Return a notice unless it repeats the previous one (no event per restart)."""
        text = f"{title}: {detail}"
        if text == self._last_notice:
            return []
        self._last_notice = text
        return [_notice(title, detail)]

    def _release(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=2)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        """Stop journalctl."""
        self._release()


def _valid(values: Any, pattern: re.Pattern[str], kind: str) -> tuple[list[str], list[str]]:
    if not isinstance(values, list):
        return [], [f"{kind}s must be a list, not {type(values).__name__}"]
    good = [v for v in values if isinstance(v, str) and pattern.fullmatch(v)]
    bad = [f"{kind} {v!r} is not valid" for v in values if v not in good]
    return good, bad


def _parse(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def _nonblocking(stream: Any) -> int:
    fd = int(stream.fileno())
    os.set_blocking(fd, False)
    return fd


def _read_available(fd: int, limit: int) -> bytes:
    """Read what the pipe holds now, up to `limit` bytes, without waiting."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = os.read(fd, min(65536, limit - size))
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
