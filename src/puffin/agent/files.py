"""Tailing log files by glob, surviving rotation by rename and by copy-truncate."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from puffin.agent.outbox import Outbox

MAX_LINE = 64 * 1024
MAX_READ = 4 * 1024 * 1024


@dataclass
class LogSource:
    """One glob of files and how their lines are read (syslog, json or plain)."""

    pattern: str
    format: str = "syslog"


def _position(outbox: Outbox, path: str) -> tuple[int, int]:
    saved = outbox.position(f"file:{path}")
    if not saved:
        return (-1, 0)
    inode, offset = saved.split(":")
    return int(inode), int(offset)


def _event(line: str, path: str, fmt: str) -> dict[str, Any]:
    event: dict[str, Any] = {"module": "logcollector", "location": path, "full_log": line}
    if fmt == "json":
        try:
            parsed = json.loads(line)
        except json.JSONDecodeError:
            event["json_error"] = True
        else:
            if isinstance(parsed, dict):
                event = {**parsed, **event}
    event["agent_hostname"] = socket.gethostname()
    event.setdefault("timestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return event


class FileTailer:
    """Keeps each followed file open, so lines written just before a rename are not lost."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self._open: dict[str, Any] = {}

    def close(self) -> None:
        """Close every followed file."""
        for handle in self._open.values():
            handle.close()
        self._open.clear()

    def keep_only(self, sources: list[LogSource]) -> None:
        """Close the files no source matches any more (a log taken out of the configuration)."""
        for path in list(self._open):
            if not any(fnmatch.fnmatch(path, s.pattern) for s in sources):
                self._open.pop(path).close()

    def poll(self, source: LogSource) -> int:
        """Read what was appended to each matching file; return how many events were queued."""
        return sum(
            self._poll_path(path, source.format) for path in sorted(glob.glob(source.pattern))
        )

    def _poll_path(self, path: str, fmt: str) -> int:
        try:
            current = os.stat(path)
        except OSError:
            return 0
        queued = 0
        handle = self._open.get(path)
        if handle is not None and os.fstat(handle.fileno()).st_ino != current.st_ino:
            queued += self._drain(handle, path, fmt, rotated=True)  # the renamed file's tail
            handle.close()
            handle = None
        if handle is None:
            try:
                handle = open(path, "rb")  # noqa: SIM115 - kept open across polls
            except OSError:
                return queued
            self._open[path] = handle
        return queued + self._drain(handle, path, fmt, rotated=False)

    def _drain(self, handle: Any, path: str, fmt: str, *, rotated: bool) -> int:
        stat = os.fstat(handle.fileno())
        inode, offset = _position(self.outbox, path)
        if inode != stat.st_ino or stat.st_size < offset:
            offset = 0  # a new file took the name, or the file was truncated in place
        handle.seek(offset)
        data = handle.read(MAX_READ)
        end = len(data) - 1 if rotated and data else data.rfind(b"\n")
        if end < 0:
            return 0
        complete = data[: end + 1]
        lines = [
            raw.decode("utf-8", errors="replace")[:MAX_LINE]
            for raw in complete.split(b"\n")
            if raw.strip()
        ]
        events = [_event(line.rstrip("\r"), path, fmt) for line in lines]
        position = f"{stat.st_ino}:{offset + len(complete)}"
        return self.outbox.add(events, {f"file:{path}": position})
