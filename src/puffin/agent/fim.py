"""File integrity monitoring: a persistent baseline per file, scheduled scans and inotify.

Every event is a flat mapping that Sigma rules can match:

- `module` "fim"; `title` "File added", "File modified" or "File deleted"; `fim_event`
  added | modified | deleted (notices use baseline | overflow | error);
- `path`; `changed`: the attribute names that differ from the baseline (empty unless
  modified);
- the file as it is now (as it was last seen, for deleted): `sha256`, `size`, `mode`
  (octal string such as "0644" or "4755"), `uid`, `owner`, `gid`, `group`, `inode`,
  `mtime` (ISO UTC);
- `<attribute>_before` for each changed attribute (`sha256_before`, `size_before`,
  `mode_before`, ...);
- `diff`: a unified diff of at most 40 lines, on modified text files no larger than
  `diff_max_bytes` whose previous content is in the baseline; never for files matching
  `nodiff` (shadow files and private keys by default), whose content is not kept at all;
- `mode_source` scheduled | realtime; `full_log` one readable line; `timestamp` ISO UTC.

Only regular files are recorded; symbolic links are neither followed nor recorded, and a
scan does not cross into another file system below a configured path. A file the agent
may not read keeps its attributes in the baseline with an empty `sha256`.

The baseline lives in `fim.db` in the state directory. The first scan of a path records
it silently and says only "baseline built: N files". Changes found by a collect() call
are stored in that database together with the baseline update, then handed to the outbox
with their id as the outbox position `fim`, so a crash neither loses nor repeats them.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import hashlib
import json
import os
import sqlite3
import stat
import time
import uuid
import zlib
from collections import deque
from collections.abc import Generator, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from puffin.agent.fim_inotify import Change, InotifyWatcher
from puffin.agent.outbox import Outbox

DEFAULT_PATHS = ("/etc", "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/boot")
DEFAULT_NODIFF = (
    "/etc/shadow*",
    "/etc/gshadow*",
    "/etc/security/opasswd",
    "*_key",
    "*.key",
    "*.pem",
)
DB_FILE = "fim.db"
POSITION = "fim"
CHUNK = 1024 * 1024
DIFF_LINES = 40
TITLES = {"added": "File added", "modified": "File modified", "deleted": "File deleted"}
# Flags Windows lacks are 0 there; O_BINARY (Windows only) stops newline translation.
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
for _flag in ("O_NOFOLLOW", "O_NONBLOCK", "O_CLOEXEC"):
    OPEN_FLAGS |= getattr(os, _flag, 0)

SCHEMA = """
CREATE TABLE IF NOT EXISTS file (
    path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL, mode TEXT NOT NULL,
    uid INTEGER NOT NULL, owner TEXT NOT NULL, gid INTEGER NOT NULL, grp TEXT NOT NULL,
    inode INTEGER NOT NULL, mtime INTEGER NOT NULL, content BLOB, scan INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS root (path TEXT PRIMARY KEY, files INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pending (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _strings(config: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = config.get(key, default)
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"fim: {key} must be a list of strings")
    return tuple(value)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def default_paths() -> tuple[str, ...]:
    """Return the paths scanned when the configuration names none, for this platform."""
    if os.name == "nt":
        from puffin.agent.windows.paths import default_fim_paths

        return default_fim_paths(os.environ)
    return DEFAULT_PATHS


def _local_paths(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Expand `%SystemRoot%`-style names on Windows, where configurations use them."""
    if os.name != "nt":
        return paths
    from puffin.agent.windows.paths import expand

    return tuple(expand(path, os.environ) for path in paths)


def _normalise(paths: tuple[str, ...]) -> list[str]:
    """Resolve symbolic links (/bin -> /usr/bin) and drop paths inside other paths."""
    kept: list[str] = []
    for path in sorted({os.path.realpath(p) for p in paths}):
        if not any(_under(path, root) for root in kept):
            kept.append(path)
    return kept


@dataclass(frozen=True)
class FimConfig:
    """What to watch and how; built from the agent's configuration mapping.

    Keys: `paths` (scanned on schedule), `realtime` (directories also watched with inotify,
    and scanned), `scan_interval` (seconds, start to start), `ignore` and `nodiff` (glob
    patterns matched against the full path or the file name; `nodiff` adds to the
    defaults), `diff_max_bytes`, `budget_seconds` (work per collect() call).
    """

    paths: tuple[str, ...] = DEFAULT_PATHS
    realtime: tuple[str, ...] = ()
    scan_interval: float = 43200.0
    ignore: tuple[str, ...] = ()
    nodiff: tuple[str, ...] = DEFAULT_NODIFF
    diff_max_bytes: int = 65536
    budget_seconds: float = 0.2

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> FimConfig:
        """Validate a mapping such as {"paths": [...], "realtime": [...], ...}."""
        try:
            return cls(
                paths=_local_paths(_strings(config, "paths", default_paths())),
                realtime=_local_paths(_strings(config, "realtime", ())),
                scan_interval=float(config.get("scan_interval", 43200)),
                ignore=_strings(config, "ignore", ()),
                nodiff=DEFAULT_NODIFF + _strings(config, "nodiff", ()),
                diff_max_bytes=int(config.get("diff_max_bytes", 65536)),
                budget_seconds=float(config.get("budget_seconds", 0.2)),
            )
        except TypeError as error:
            raise ValueError(f"fim: {error}") from error

    def scan_roots(self) -> list[str]:
        """Return the directories and files a scan covers, realtime ones included."""
        return _normalise(self.paths + self.realtime)

    def realtime_roots(self) -> list[str]:
        """Return the directories watched in real time."""
        return _normalise(self.realtime)


@dataclass(frozen=True)
class Snapshot:
    """What the baseline knows about one file."""

    sha256: str
    size: int
    mode: str
    uid: int
    owner: str
    gid: int
    group: str
    inode: int
    mtime: int
    content: bytes | None = field(default=None, compare=False, repr=False)

    def fields(self) -> dict[str, Any]:
        """Return the attributes as event fields (mtime as ISO UTC)."""
        values = asdict(self)
        del values["content"]
        values["mtime"] = _iso(self.mtime)
        return values


ATTRIBUTES = tuple(f.name for f in fields(Snapshot) if f.name != "content")


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _short(name: str, value: Any) -> str:
    return str(value)[:16] if name == "sha256" else str(value)


def unified_diff(path: str, before: bytes, after: bytes) -> str:
    """Return a unified diff of two texts, cut to DIFF_LINES lines."""
    lines = list(
        difflib.unified_diff(
            before.decode("utf-8", "replace").splitlines(),
            after.decode("utf-8", "replace").splitlines(),
            fromfile=path,
            tofile=path,
            lineterm="",
        )
    )
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)"]
    return "\n".join(lines)


class FimCollector:
    """Scheduled and real-time integrity checks against the baseline in `fim.db`.

    Work runs as resumable jobs (real-time checks first, then the scheduled scan) that
    pause between files and between 1 MiB chunks, so one collect() call spends about
    `budget_seconds` and the agent loop keeps delivering during a long scan.
    """

    name = "fim"

    def __init__(self, config: FimConfig, state_dir: Path) -> None:
        self.config = config
        self._roots = config.scan_roots()
        self._db = sqlite3.connect(state_dir / DB_FILE, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a lost commit is only re-detected
        self._db.executescript(SCHEMA)
        self._db_id = self._meta("id") or self._set_meta("id", uuid.uuid4().hex)
        self._baselined = {row[0] for row in self._db.execute("SELECT path FROM root")}
        self._queue: list[dict[str, Any]] = []
        self._realtime_jobs: deque[Iterator[None]] = deque()
        self._scan: Iterator[None] | None = None
        self._next_scan = 0.0
        self._watcher: InotifyWatcher | None = None
        self._watch_started = False
        self._names: dict[tuple[str, int], str] = {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state_dir: Path) -> FimCollector:
        """Build a collector from the agent's `fim` configuration."""
        return cls(FimConfig.from_mapping(config), state_dir)

    def close(self) -> None:
        """Stop watching and close the baseline."""
        self._stop_watcher()
        self._scan = None
        self._realtime_jobs.clear()
        self._db.close()

    # configuration -------------------------------------------------------------------

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Switch to a new configuration without a restart (raises ValueError if invalid)."""
        new = FimConfig.from_mapping(config)
        old_roots, old_realtime = set(self._roots), self.config.realtime_roots()
        self.config, self._roots = new, new.scan_roots()
        self._forget([root for root in old_roots if root not in self._roots])
        added = sorted(set(self._roots) - old_roots)
        if self._scan is not None:
            self._scan, self._next_scan = None, 0.0  # restart over the new set of paths
        elif added:
            self._scan = self._scan_job(added, "scheduled")
        if new.realtime_roots() != old_realtime:
            self._stop_watcher()

    def _forget(self, roots: list[str]) -> None:
        for root in roots:
            if not any(_under(root, kept) for kept in self._roots):
                low, high = _prefix_range(root)
                self._db.execute(
                    "DELETE FROM file WHERE path = ? OR (path >= ? AND path < ?)",
                    (root, low, high),
                )
            self._db.execute("DELETE FROM root WHERE path = ?", (root,))
            self._baselined.discard(root)

    # the loop ------------------------------------------------------------------------

    def collect(self, outbox: Outbox, now: float) -> int:
        """Run due work for about `budget_seconds`; write the changes found to the outbox."""
        written = self._deliver(outbox)
        deadline = time.monotonic() + self.config.budget_seconds
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._take_realtime()
            if self._scan is None and now >= self._next_scan:
                self._next_scan = now + self.config.scan_interval
                self._scan = self._scan_job(self._roots, "scheduled")
            self._drive(deadline)
        except Exception as error:
            self._db.execute("ROLLBACK")
            self._scan, self._queue = None, []
            self._realtime_jobs.clear()
            self._next_scan = now + 60.0
            notice = self._notice("error", f"FIM error, scan retried in 60 s: {error!r}")
            return written + outbox.add([notice])
        self._store_queue()
        self._db.execute("COMMIT")
        return written + self._deliver(outbox)

    def _drive(self, deadline: float) -> None:
        """Advance the jobs one step at a time (at least one) until the deadline."""
        while self._realtime_jobs or self._scan is not None:
            if self._realtime_jobs:
                if next(self._realtime_jobs[0], StopIteration) is StopIteration:
                    self._realtime_jobs.popleft()
            elif self._scan is not None and next(self._scan, StopIteration) is StopIteration:
                self._scan = None
                self._set_meta("scan_finished", _iso(time.time()))
            if time.monotonic() >= deadline:
                return

    @property
    def scanning(self) -> bool:
        """Whether a scheduled scan is under way."""
        return self._scan is not None

    def status(self) -> dict[str, Any]:
        """Return what is watched and when it was scanned, for the agent's keep-alive."""
        files = self._db.execute("SELECT COUNT(*) FROM file").fetchone()[0]
        roots = dict(self._db.execute("SELECT path, files FROM root ORDER BY path").fetchall())
        return {
            "paths": self._roots,
            "realtime": self.config.realtime_roots(),
            "files": int(files),
            "baselines": roots,
            "scans": int(self._meta("scan") or 0),
            "last_scan_started": self._meta("scan_started"),
            "last_scan_finished": self._meta("scan_finished"),
            "scanning": self.scanning,
            "watching": self._watcher is not None,
        }

    def _store_queue(self) -> None:
        self._db.executemany(
            "INSERT INTO pending (body) VALUES (?)",
            [(json.dumps(event, separators=(",", ":")),) for event in self._queue],
        )
        self._queue = []

    def _deliver(self, outbox: Outbox) -> int:
        """Move stored changes into the outbox, skipping those it already holds."""
        saved = (outbox.position(POSITION) or "").partition(":")
        done = int(saved[2]) if saved[0] == self._db_id else 0
        rows = self._db.execute(
            "SELECT id, body FROM pending WHERE id > ? ORDER BY id", (done,)
        ).fetchall()
        written = 0
        if rows:
            last = rows[-1][0]
            events = [json.loads(body) for _, body in rows]
            written = outbox.add(events, {POSITION: f"{self._db_id}:{last}"})
            done = last
        self._db.execute("DELETE FROM pending WHERE id <= ?", (done,))
        return written

    # scans ---------------------------------------------------------------------------

    def _scan_job(self, roots: list[str], source: str) -> Iterator[None]:
        self._names.clear()
        scan_id = int(self._meta("scan") or 0) + 1
        self._set_meta("scan", str(scan_id))
        self._set_meta("scan_started", _iso(time.time()))
        for root in roots:
            building = root not in self._baselined
            count = 0
            for path in self._walk(root):
                count += 1
                yield from self._check(path, source, scan_id, report_added=not building)
            for path in self._paths_under(root, before_scan=scan_id):
                yield from self._check(path, source, scan_id, report_added=not building)
            if building:
                self._mark_baselined(root, count)

    def _rescan_job(self, roots: list[str]) -> Iterator[None]:
        scan_id = int(self._meta("scan") or 0) + 1
        self._set_meta("scan", str(scan_id))
        for root in roots:
            known = self._is_baselined(root)
            for path in self._walk(root):
                yield from self._check(path, "realtime", scan_id, report_added=known)
            for path in self._paths_under(root, before_scan=scan_id):
                yield from self._check(path, "realtime", scan_id, report_added=known)

    def _mark_baselined(self, root: str, count: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO root (path, files) VALUES (?, ?)", (root, count))
        self._baselined.add(root)
        self._queue.append(
            {
                **self._notice("baseline", f"baseline built: {count} files under {root}"),
                "path": root,
                "files": count,
            }
        )

    def _walk(self, root: str) -> Iterator[str]:
        """Yield the regular files under root, not crossing into other file systems."""
        try:
            top = os.lstat(root)
        except OSError:
            return
        if stat.S_ISREG(top.st_mode) and not self._ignored(root):
            yield root
        if not stat.S_ISDIR(top.st_mode):
            return
        stack = [root]
        while stack:
            try:
                with os.scandir(stack.pop()) as listing:
                    entries = list(listing)
            except OSError:
                continue
            for entry in entries:
                if self._ignored(entry.path):
                    continue
                if entry.is_file(follow_symlinks=False):
                    yield entry.path
                elif entry.is_dir(follow_symlinks=False) and _same_device(entry, top.st_dev):
                    stack.append(entry.path)

    def _ignored(self, path: str) -> bool:
        return _matches(path, self.config.ignore)

    def _paths_under(self, root: str, before_scan: int | None = None) -> list[str]:
        low, high = _prefix_range(root)
        query = "SELECT path FROM file WHERE (path = ? OR (path >= ? AND path < ?))"
        values: tuple[Any, ...] = (root, low, high)
        if before_scan is not None:
            query += " AND scan < ?"
            values += (before_scan,)
        return [row[0] for row in self._db.execute(query, values)]

    # one file ------------------------------------------------------------------------

    def _check(
        self, path: str, source: str, scan_id: int, *, report_added: bool = True
    ) -> Generator[None, None, None]:
        """Compare one file with its baseline, update the baseline and queue the change."""
        now = None if self._ignored(path) else (yield from self._snapshot(path))
        before = self._load(path)
        if now is None:
            if before is not None:
                self._db.execute("DELETE FROM file WHERE path = ?", (path,))
                if not self._ignored(path):
                    self._queue.append(self._change("deleted", path, source, before))
            return
        changed = [n for n in ATTRIBUTES if before and getattr(before, n) != getattr(now, n)]
        if before is None or changed or before.content != now.content:
            self._save(path, now, scan_id)
        else:
            self._db.execute("UPDATE file SET scan = ? WHERE path = ?", (scan_id, path))
        if before is None and report_added:
            self._queue.append(self._change("added", path, source, now))
        elif before is not None and changed:
            self._queue.append(self._modified(path, source, before, now, changed))

    def _snapshot(self, path: str) -> Generator[None, None, Snapshot | None]:
        """Hash a regular file in chunks, pausing between them; None when it is gone."""
        try:
            fd = os.open(path, OPEN_FLAGS)
        except PermissionError:
            return self._unreadable(path)
        except OSError:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            limit = -1 if _matches(path, self.config.nodiff) else self.config.diff_max_bytes
            digest, kept = hashlib.sha256(), bytearray()
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
                if len(kept) + len(chunk) <= limit:
                    kept += chunk
                else:
                    limit = -1
                yield
        except OSError:
            return None
        finally:
            os.close(fd)
        content = bytes(kept) if limit >= 0 and b"\0" not in kept else None
        return self._describe(info, digest.hexdigest(), content)

    def _unreadable(self, path: str) -> Snapshot | None:
        """Describe a file the agent may not read: attributes only, an empty sha256."""
        try:
            info = os.lstat(path)
        except OSError:
            return None
        return self._describe(info, "", None) if stat.S_ISREG(info.st_mode) else None

    def _describe(self, info: os.stat_result, sha256: str, content: bytes | None) -> Snapshot:
        return Snapshot(
            sha256=sha256,
            size=info.st_size,
            mode=format(stat.S_IMODE(info.st_mode), "04o"),
            uid=info.st_uid,
            owner=self._name("user", info.st_uid),
            gid=info.st_gid,
            group=self._name("group", info.st_gid),
            inode=info.st_ino,
            mtime=int(info.st_mtime),
            content=content,
        )

    def _name(self, kind: str, number: int) -> str:
        key = (kind, number)
        if key not in self._names:
            self._names[key] = _account_name(kind, number)
        return self._names[key]

    def _load(self, path: str) -> Snapshot | None:
        row = self._db.execute(
            "SELECT sha256, size, mode, uid, owner, gid, grp, inode, mtime, content "
            "FROM file WHERE path = ?",
            (path,),
        ).fetchone()
        if row is None:
            return None
        content = zlib.decompress(row[-1]) if row[-1] is not None else None
        return Snapshot(**dict(zip(ATTRIBUTES, row[:-1], strict=True)), content=content)

    def _save(self, path: str, snapshot: Snapshot, scan_id: int) -> None:
        content = zlib.compress(snapshot.content) if snapshot.content is not None else None
        values = [getattr(snapshot, name) for name in ATTRIBUTES]
        self._db.execute(
            "INSERT OR REPLACE INTO file (path, sha256, size, mode, uid, owner, gid, grp, "
            "inode, mtime, content, scan) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, *values, content, scan_id),
        )

    # events --------------------------------------------------------------------------

    def _change(self, kind: str, path: str, source: str, snapshot: Snapshot) -> dict[str, Any]:
        return {
            "module": "fim",
            "title": TITLES[kind],
            "fim_event": kind,
            "path": path,
            "changed": [],
            **snapshot.fields(),
            "mode_source": source,
            "full_log": f"File '{path}' {kind} ({source}): size {snapshot.size}, "
            f"mode {snapshot.mode}, owner {snapshot.owner}, sha256 {snapshot.sha256[:16]}",
            "timestamp": _iso(time.time()),
        }

    def _modified(
        self, path: str, source: str, before: Snapshot, now: Snapshot, changed: list[str]
    ) -> dict[str, Any]:
        event = self._change("modified", path, source, now)
        old = before.fields()
        event["changed"] = changed
        event.update({f"{name}_before": old[name] for name in changed})
        if "sha256" in changed and before.content is not None and now.content is not None:
            event["diff"] = unified_diff(path, before.content, now.content)
        details = ", ".join(
            f"{name} {_short(name, old[name])} -> {_short(name, event[name])}" for name in changed
        )
        event["full_log"] = f"File '{path}' modified ({source}): {details}"
        return event

    def _notice(self, kind: str, message: str) -> dict[str, Any]:
        titles = {
            "baseline": "FIM baseline built",
            "overflow": "FIM real-time queue overflow",
            "error": "FIM error",
        }
        return {
            "module": "fim",
            "title": titles[kind],
            "fim_event": kind,
            "full_log": message,
            "timestamp": _iso(time.time()),
        }

    # real time -----------------------------------------------------------------------

    def _take_realtime(self) -> None:
        if not self._watch_started:
            self._start_watcher()
        if self._watcher is None:
            return
        changes = self._watcher.read()
        self._report_watch_errors()
        self.handle_changes(changes)

    def handle_changes(self, changes: list[Change]) -> None:
        """Queue checks for what inotify reported; on overflow, rescan the watched paths."""
        watched = self.config.realtime_roots()
        if any(change.overflow for change in changes):
            message = f"inotify queue overflowed; rescanning {', '.join(watched)}"
            self._queue.append(self._notice("overflow", message))
            self._realtime_jobs.append(self._rescan_job(watched))
            return
        paths = sorted({c.path for c in changes if any(_under(c.path, root) for root in watched)})
        if paths:
            self._realtime_jobs.append(self._realtime_job(paths))

    def _realtime_job(self, paths: list[str]) -> Iterator[None]:
        scan_id = int(self._meta("scan") or 0)
        for path in paths:
            found = set(self._walk(path)) | set(self._paths_under(path))
            known = self._is_baselined(path)  # before its first scan ends, record silently
            for item in sorted(found):
                yield from self._check(item, "realtime", scan_id, report_added=known)

    def _is_baselined(self, path: str) -> bool:
        return any(_under(path, root) for root in self._baselined)

    def _start_watcher(self) -> None:
        self._watch_started = True
        roots = self.config.realtime_roots()
        if not roots:
            return
        try:
            self._watcher = InotifyWatcher()
        except OSError as error:
            self._queue.append(self._notice("error", f"real-time watching unavailable: {error}"))
            return
        for root in roots:
            if os.path.isdir(root):
                self._watcher.watch_tree(root)
            else:
                self._watcher.errors.append(f"real-time watching needs a directory: {root}")
        self._report_watch_errors()

    def _stop_watcher(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        self._watcher, self._watch_started = None, False

    def _report_watch_errors(self) -> None:
        if self._watcher is not None:
            for message in self._watcher.errors:
                self._queue.append(self._notice("error", message))
            self._watcher.errors.clear()

    # metadata ------------------------------------------------------------------------

    def _meta(self, name: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, name: str, value: str) -> str:
        self._db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))
        return value


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    name = os.path.basename(path)
    return any(
        fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(name, pattern)
        for pattern in patterns
    )


def _same_device(entry: os.DirEntry[str], device: int) -> bool:
    with contextlib.suppress(OSError):
        return entry.stat(follow_symlinks=False).st_dev == device
    return False


def _account_name(kind: str, number: int) -> str:
    """Return the user or group name of an id, else the id (Windows has no pwd or grp)."""
    try:
        import grp
        import pwd
    except ImportError:
        return str(number)
    try:
        if kind == "user":
            return pwd.getpwuid(number).pw_name
        return grp.getgrgid(number).gr_name
    except KeyError:
        return str(number)


def _prefix_range(root: str) -> tuple[str, str]:
    """Return bounds such that low <= path < high holds for every path below root."""
    prefix = root.rstrip(os.sep) + os.sep
    return prefix, prefix[:-1] + chr(ord(os.sep) + 1)  # the character right after the sep
