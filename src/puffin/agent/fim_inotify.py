"""Real-time file watching through the kernel's inotify interface, called with ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from dataclasses import dataclass

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
# Linux's values where `os` lacks them (Windows), so this module imports everywhere.
IN_NONBLOCK = getattr(os, "O_NONBLOCK", 0o4000)
IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

WATCH_MASK = (
    IN_CREATE
    | IN_DELETE
    | IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CLOSE_WRITE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
    | IN_ONLYDIR
    | IN_DONT_FOLLOW
)
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then the name
READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class RawEvent:
    """One `struct inotify_event` as the kernel wrote it."""

    wd: int
    mask: int
    cookie: int
    name: str


@dataclass(frozen=True)
class Change:
    """Something happened at `path`; `overflow` means the kernel dropped events."""

    path: str
    mask: int
    overflow: bool = False

    @property
    def is_dir(self) -> bool:
        """Whether the change concerns a directory."""
        return bool(self.mask & IN_ISDIR)


def parse_events(buffer: bytes) -> list[RawEvent]:
    """Split what `read` returned from an inotify descriptor into events."""
    events = []
    offset = 0
    while offset + HEADER.size <= len(buffer):
        wd, mask, cookie, length = HEADER.unpack_from(buffer, offset)
        start = offset + HEADER.size
        raw_name = buffer[start : start + length].split(b"\0", 1)[0]
        events.append(RawEvent(wd, mask, cookie, os.fsdecode(raw_name)))
        offset = start + length
    return events


def _libc() -> ctypes.CDLL:
    if not sys.platform.startswith("linux"):
        raise OSError(f"inotify exists only on Linux, not on {sys.platform}")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.inotify_init1.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    return libc


class InotifyWatcher:
    """Recursive watches on directory trees; `read` never blocks.

    New directories are watched as they appear and forgotten when they go; problems
    (watch limit reached, unreadable directory) are kept in `errors` for the caller to
    report.
    """

    def __init__(self) -> None:
        self._libc = _libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, f"inotify_init1: {os.strerror(code)}")
        self.fd: int = fd
        self._paths: dict[int, str] = {}
        self.errors: list[str] = []

    def close(self) -> None:
        """Drop every watch."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._paths.clear()

    @property
    def watched(self) -> int:
        """How many directories are watched."""
        return len(self._paths)

    def watch_tree(self, root: str) -> list[str]:
        """Watch a directory and every directory below it; return those newly watched."""
        added = []
        stack = [root]
        while stack:
            directory = stack.pop()
            if not self._add(directory):
                continue
            added.append(directory)
            try:
                with os.scandir(directory) as entries:
                    stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
            except OSError as error:
                self.errors.append(f"cannot list {directory}: {error.strerror}")
        return added

    def _add(self, directory: str) -> bool:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), WATCH_MASK)
        if wd < 0:
            code = ctypes.get_errno()
            if code not in (errno.ENOENT, errno.ENOTDIR):
                self.errors.append(f"cannot watch {directory}: {os.strerror(code)}")
            return False
        self._paths[wd] = directory
        return True

    def unwatch_tree(self, root: str) -> None:
        """Stop watching a directory and everything below it (it moved away)."""
        prefix = root.rstrip("/") + "/"
        for wd, path in list(self._paths.items()):
            if path == root or path.startswith(prefix):
                self._libc.inotify_rm_watch(self.fd, wd)
                del self._paths[wd]

    def read(self) -> list[Change]:
        """Return what changed since the last call, without waiting."""
        changes: list[Change] = []
        while True:
            try:
                buffer = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return changes
            if not buffer:
                return changes
            changes.extend(self.feed(buffer))

    def feed(self, buffer: bytes) -> list[Change]:
        """Turn a buffer of raw events into changes, keeping the watched tree current."""
        changes = []
        for event in parse_events(buffer):
            if event.mask & IN_Q_OVERFLOW:
                changes.append(Change("", event.mask, overflow=True))
                continue
            directory = self._paths.get(event.wd)
            if directory is None:
                continue
            if event.mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
                if event.mask & IN_IGNORED:
                    self._paths.pop(event.wd, None)
                continue
            path = os.path.join(directory, event.name) if event.name else directory
            self._follow_directories(path, event.mask)
            changes.append(Change(path, event.mask))
        return changes

    def _follow_directories(self, path: str, mask: int) -> None:
        if not mask & IN_ISDIR:
            return
        if mask & (IN_CREATE | IN_MOVED_TO):
            self.watch_tree(path)
        elif mask & IN_MOVED_FROM:
            self.unwatch_tree(path)
