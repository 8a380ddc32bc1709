"""Rootkit checks: known files, trojaned tools, kernel modules, hidden processes and ports,
promiscuous interfaces, odd files in /dev and risky permissions in system directories.

Each check is a generator that takes its roots as parameters (`root`, `proc`, `sys`), so
tests point it at a fake tree; it yields a `Finding` per problem and `None` between slices
of work, so the collector can pause it when its time budget is spent. `findings(check)`
runs one to the end.

Events are flat: `module` "rootcheck", `title` ("Possible rootkit: NAME" or a specific
title), `check`, `full_log`, `timestamp`, plus `path`, `pid`, `port` and `protocol`,
`interface`, `module_name`, `rootkit` where they apply. A run ends with one "Rootcheck
finished" event giving the number of findings. Findings are reported on every run (at
start, then every `interval` seconds); the server's alerting deduplicates them.

What /dev may hold: device nodes, symbolic links, sockets and pipes anywhere; directories
whose names do not start with a dot; the entries in DEV_ALLOW (udev and initramfs state,
MAKEDEV, container runtimes' files). Reported: regular files and hidden entries elsewhere,
and executable files in /dev/shm (shared memory is where file-less implants stage).
Separately mounted file systems below /dev (pts, mqueue, hugepages) are not entered.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import socket
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from puffin.agent.outbox import Outbox

ROOT, PROC, SYS = Path("/"), Path("/proc"), Path("/sys")
IFF_PROMISC = 0x100
MAX_BINARY = 64 * 1024 * 1024
POSITION = "rootcheck"
SYSTEM_DIRS = (
    "/bin",
    "/sbin",
    "/usr/bin",
    "/usr/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/libexec",
)
DEV_ALLOW = (
    "/dev/.udev",
    "/dev/.initramfs",
    "/dev/.initramfs-tools",
    "/dev/.mdadm",
    "/dev/.static",
    "/dev/.blkid.tab*",
    "/dev/.lxc*",
    "/dev/.lxd-mounts",
    "/dev/MAKEDEV",
    "/dev/README.MAKEDEV",
    "/dev/termination-log",
)
DEV_SEPARATE = ("/dev/pts", "/dev/mqueue", "/dev/hugepages", "/dev/shm")  # noqa: S108
PAUSE_EVERY = 256

Check = Iterator["Finding | None"]


@dataclass(frozen=True)
class Finding:
    """One problem a check found."""

    check: str
    title: str
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def event(self) -> dict[str, Any]:
        """Return the finding as a flat event."""
        return {
            "module": "rootcheck",
            "title": self.title,
            "check": self.check,
            **self.details,
            "full_log": self.message,
            "timestamp": _iso(time.time()),
        }


def findings(check: Check) -> list[Finding]:
    """Run a check to its end and return what it found."""
    return [item for item in check if item is not None]


def load_signatures() -> dict[str, Any]:
    """Return the shipped signature list (files, trojans, modules)."""
    text = resources.files("puffin.agent").joinpath("rootcheck_signatures.json").read_text()
    signatures: dict[str, Any] = json.loads(text)
    return signatures


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _inside(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _shown(root: str, path: str) -> str:
    """Return a path below root as the endpoint would name it (from "/")."""
    return "/" + os.path.relpath(path, root) if path != root else "/"


# signatures ------------------------------------------------------------------------------


def check_signature_files(
    *, root: Path = ROOT, signatures: Mapping[str, Any] | None = None
) -> Check:
    """Report files known to belong to rootkits, and libraries preloaded into every program."""
    for entry in (signatures or load_signatures())["files"]:
        if os.path.lexists(_inside(root, entry["path"])):
            yield Finding(
                "files",
                f"Possible rootkit: {entry['rootkit']}",
                f"{entry['path']} exists; the {entry['rootkit']} rootkit uses this path",
                {"path": entry["path"], "rootkit": entry["rootkit"]},
            )
    libraries = _read(_inside(root, "/etc/ld.so.preload")).replace(":", " ").split()
    if libraries:
        yield Finding(
            "files",
            "Library preloaded into every program",
            f"/etc/ld.so.preload loads {', '.join(libraries)}; userland rootkits hide this way",
            {"path": "/etc/ld.so.preload", "libraries": libraries},
        )


def check_trojans(
    *,
    root: Path = ROOT,
    signatures: Mapping[str, Any] | None = None,
    dirs: tuple[str, ...] = ("/bin", "/sbin", "/usr/bin", "/usr/sbin"),
) -> Check:
    """Search system tools (ls, ps, netstat...) for hide-list paths trojans compile in."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for entry in (signatures or load_signatures())["trojans"]:
        for binary in entry["binaries"]:
            wanted.setdefault(binary, []).extend((s, entry["rootkit"]) for s in entry["strings"])
    real_root = os.path.realpath(root)
    seen: set[str] = set()
    for binary, needles in wanted.items():
        for directory in dirs:
            path = os.path.realpath(_inside(root, directory) / binary)
            if path in seen or not os.path.isfile(path):
                continue
            seen.add(path)
            yield from _search_binary(path, _shown(real_root, path), needles)
            yield None


def _search_binary(path: str, shown: str, needles: list[tuple[str, str]]) -> Check:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BINARY)
    except OSError:
        return
    for needle, rootkit in needles:
        if needle.encode() in data:
            yield Finding(
                "trojans",
                f"Possible rootkit: {rootkit} (trojaned {os.path.basename(path)})",
                f"{shown} contains '{needle}', a hide list of the {rootkit} rootkit",
                {"path": shown, "rootkit": rootkit, "string": needle},
            )


def check_kernel_modules(
    *, proc: Path = PROC, sys: Path = SYS, signatures: Mapping[str, Any] | None = None
) -> Check:
    """Report rootkit modules by name, and live modules missing from /proc/modules."""
    listed = _listed_modules(proc)
    live = {p.parent.name for p in (sys / "module").glob("*/initstate") if "live" in _read(p)}
    for entry in (signatures or load_signatures())["modules"]:
        if entry["name"] in listed | live:
            yield Finding(
                "modules",
                f"Possible rootkit: {entry['rootkit']}",
                f"kernel module {entry['name']} is loaded; it is the {entry['rootkit']} rootkit",
                {"module_name": entry["name"], "rootkit": entry["rootkit"]},
            )
    hidden = live - listed
    if hidden:
        hidden -= _listed_modules(proc)  # a module loaded meanwhile is not hidden
    for name in sorted(hidden):
        yield Finding(
            "modules",
            "Hidden kernel module",
            f"kernel module {name} is live in /sys/module but absent from /proc/modules",
            {"module_name": name},
        )


def _listed_modules(proc: Path) -> set[str]:
    return {line.split()[0] for line in _read(proc / "modules").splitlines() if line.strip()}


# hidden processes and ports ---------------------------------------------------------------


def check_hidden_processes(*, proc: Path = PROC, pids: range | None = None) -> Check:
    """Report processes that answer kill(pid, 0) or getpgid but that /proc does not list."""
    if pids is None:
        pids = range(1, int(_read(proc / "sys/kernel/pid_max").strip() or 32768) + 1)
    listed = _listed_pids(proc)
    suspects = []
    for index, pid in enumerate(pids):
        if pid not in listed and _alive(pid):
            suspects.append(pid)
        if index % 4096 == 4095:
            yield None
    if suspects:
        listed = _listed_pids(proc)  # a fresh view: processes born during the probe
    for pid in suspects:
        if pid in listed or _is_thread(proc, pid) or not _alive(pid):
            continue
        yield Finding(
            "processes",
            "Hidden process",
            f"process {pid} exists for the kernel but is not listed in /proc",
            {"pid": pid},
        )


def _listed_pids(proc: Path) -> set[int]:
    try:
        return {int(name) for name in os.listdir(proc) if name.isdigit()}
    except OSError:
        return set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except OSError:
        try:
            os.getpgid(pid)
        except OSError:
            return False
    return True


def _is_thread(proc: Path, pid: int) -> bool:
    """Threads answer kill() by their id too, but /proc lists only thread-group leaders."""
    for line in _read(proc / str(pid) / "status").splitlines():
        if line.startswith("Tgid:"):
            return int(line.split()[1]) != pid
    return False


def check_hidden_ports(
    *,
    proc: Path = PROC,
    ports: range = range(1, 65536),
    protocols: tuple[str, ...] = ("tcp", "udp"),
    address: str = "0.0.0.0",  # noqa: S104 - the test binds the wildcard on purpose
) -> Check:
    """Report ports that cannot be bound (in use) but that /proc/net does not show."""
    for protocol in protocols:
        shown = _proc_ports(proc, protocol)
        suspects = []
        for index, port in enumerate(ports):
            if port not in shown and _in_use(protocol, address, port):
                suspects.append(port)
            if index % 1024 == 1023:
                yield None
        if suspects:
            shown = _proc_ports(proc, protocol)  # a fresh view: sockets opened meanwhile
        for port in suspects:
            if port not in shown and _in_use(protocol, address, port):
                yield Finding(
                    "ports",
                    "Hidden port",
                    f"{protocol} port {port} is in use but not shown in /proc/net/{protocol}",
                    {"port": port, "protocol": protocol},
                )


def _proc_ports(proc: Path, protocol: str) -> set[int]:
    ports = set()
    for suffix in ("", "6"):
        for line in _read(proc / "net" / f"{protocol}{suffix}").splitlines()[1:]:
            columns = line.split()
            if len(columns) > 1 and ":" in columns[1]:
                ports.add(int(columns[1].rsplit(":", 1)[1], 16))
    return ports


def _in_use(protocol: str, address: str, port: int) -> bool:
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((address, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE  # EACCES (< 1024, not root): cannot tell
    return False


# interfaces, /dev and permissions ---------------------------------------------------------


def check_promiscuous_interfaces(*, sys: Path = SYS) -> Check:
    """Report network interfaces in promiscuous mode that are not bridge ports."""
    for flags_file in sorted((sys / "class" / "net").glob("*/flags")):
        try:
            flags = int(_read(flags_file).strip(), 16)
        except ValueError:
            continue
        interface = flags_file.parent.name
        if flags & IFF_PROMISC and not (flags_file.parent / "brport").exists():
            yield Finding(
                "interfaces",
                "Promiscuous network interface",
                f"interface {interface} is in promiscuous mode; a packet sniffer may run",
                {"interface": interface},
            )


def check_dev(*, root: Path = ROOT, allow: tuple[str, ...] = DEV_ALLOW) -> Check:
    """Report regular files and hidden entries in /dev, executables in /dev/shm."""
    real_root = os.path.realpath(root)
    for count, (entry, shown) in enumerate(
        _walk(os.path.join(real_root, "dev"), real_root, allow + DEV_SEPARATE)
    ):
        if entry.is_symlink():
            pass
        elif entry.is_file(follow_symlinks=False):
            yield Finding(
                "dev", "File in /dev", f"{shown} is a regular file in /dev", {"path": shown}
            )
        elif entry.name.startswith("."):
            yield Finding(
                "dev", "Hidden entry in /dev", f"{shown} is hidden in /dev", {"path": shown}
            )
        if count % PAUSE_EVERY == PAUSE_EVERY - 1:
            yield None
    yield from _shared_memory_executables(os.path.join(real_root, "dev", "shm"), real_root)


def _shared_memory_executables(directory: str, real_root: str) -> Check:
    for count, (entry, shown) in enumerate(_walk(directory, real_root, ())):
        if entry.is_file(follow_symlinks=False) and _executable(entry):
            yield Finding(
                "dev",
                "Executable in shared memory",
                f"{shown} is an executable file in shared memory",
                {"path": shown},
            )
        if count % PAUSE_EVERY == PAUSE_EVERY - 1:
            yield None


def _executable(entry: os.DirEntry[str]) -> bool:
    try:
        if entry.stat(follow_symlinks=False).st_mode & 0o111:
            return True
        with open(entry.path, "rb") as handle:
            return handle.read(4) == b"\x7fELF"
    except OSError:
        return False


def check_permissions(
    *,
    root: Path = ROOT,
    dirs: tuple[str, ...] = SYSTEM_DIRS,
    setuid_allow: tuple[str, ...] | None = None,
) -> Check:
    """Report world-writable entries, and set-uid/set-gid files not expected, in system dirs.

    `setuid_allow` holds path patterns ("*" spans folders); by default the shipped list of
    programs that distributions install set-uid or set-gid.
    """
    allow = tuple(load_signatures()["setuid_expected"]) if setuid_allow is None else setuid_allow
    real_root = os.path.realpath(root)
    seen: set[str] = set()
    for directory in dirs:
        top = os.path.realpath(_inside(root, directory))
        if top in seen or not os.path.isdir(top):
            continue
        seen.add(top)
        for count, (entry, shown) in enumerate(_walk(top, real_root, (), seen)):
            yield from _permission_findings(entry, shown, allow)
            if count % PAUSE_EVERY == PAUSE_EVERY - 1:
                yield None


def _permission_findings(entry: os.DirEntry[str], shown: str, allow: tuple[str, ...]) -> Check:
    if entry.is_symlink():
        return
    try:
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError:
        return
    sticky_dir = stat.S_ISDIR(mode) and mode & stat.S_ISVTX
    if mode & stat.S_IWOTH and not sticky_dir:
        yield Finding(
            "permissions",
            "World-writable entry in a system directory",
            f"{shown} is writable by every user (mode {stat.S_IMODE(mode):04o})",
            {"path": shown, "mode": f"{stat.S_IMODE(mode):04o}"},
        )
    if stat.S_ISREG(mode) and mode & (stat.S_ISUID | stat.S_ISGID) and not _allowed(shown, allow):
        kind = "set-uid" if mode & stat.S_ISUID else "set-gid"
        yield Finding(
            "permissions",
            f"Unexpected {kind} program",
            f"{shown} is {kind} (mode {stat.S_IMODE(mode):04o}) and not in the expected list",
            {"path": shown, "mode": f"{stat.S_IMODE(mode):04o}"},
        )


def _allowed(shown: str, patterns: tuple[str, ...]) -> bool:
    """Match /bin/x and /usr/bin/x alike, for systems with and without a merged /usr."""
    names = {shown, shown[4:] if shown.startswith("/usr/") else "/usr" + shown}
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in patterns)


def _walk(
    top: str, real_root: str, allow: tuple[str, ...], seen: set[str] | None = None
) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Yield the entries below top with their shown path, staying on top's file system.

    Entries matching `allow` are skipped with their subtrees; directories in `seen` are
    not entered twice.
    """
    try:
        device = os.lstat(top).st_dev
    except OSError:
        return
    stack = [top]
    while stack:
        try:
            with os.scandir(stack.pop()) as listing:
                entries = list(listing)
        except OSError:
            continue
        for entry in entries:
            shown = _shown(real_root, entry.path)
            if any(fnmatch.fnmatchcase(shown, pattern) for pattern in allow):
                continue
            yield entry, shown
            if entry.is_dir(follow_symlinks=False) and _on_device(entry, device):
                if seen is not None:
                    if entry.path in seen:
                        continue
                    seen.add(entry.path)
                stack.append(entry.path)


def _on_device(entry: os.DirEntry[str], device: int) -> bool:
    try:
        return entry.stat(follow_symlinks=False).st_dev == device
    except OSError:
        return False


# the collector ----------------------------------------------------------------------------

CHECKS = ("files", "trojans", "modules", "processes", "ports", "interfaces", "dev", "permissions")


def _step(run: Check) -> Finding | type[StopIteration] | None:
    try:
        return next(run)
    except StopIteration:
        return StopIteration


def _port_range(value: Any) -> range:
    """Read "1-1024", [1, 1024] or "22" as a range of ports."""
    parts = value.partition("-")[::2] if isinstance(value, str) else value
    low, high = int(parts[0]), int(parts[-1] or parts[0])
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"rootcheck: ports must lie within 1-65535, not {low}-{high}")
    return range(low, high + 1)


@dataclass(frozen=True)
class RootcheckConfig:
    """Which checks run, how often, and against which roots."""

    interval: float = 43200.0
    checks: tuple[str, ...] = CHECKS
    root: Path = ROOT
    proc: Path = PROC
    sys: Path = SYS
    ports: range = range(1, 65536)
    system_dirs: tuple[str, ...] = SYSTEM_DIRS
    setuid_allow: tuple[str, ...] = ()
    dev_allow: tuple[str, ...] = DEV_ALLOW
    budget_seconds: float = 0.2

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> RootcheckConfig:
        """Validate a mapping such as {"interval": 43200, "checks": ["files", "ports"]}."""
        checks = tuple(config.get("checks", CHECKS))
        unknown = sorted(set(checks) - set(CHECKS))
        if unknown:
            raise ValueError(f"rootcheck: unknown checks {unknown}; known: {list(CHECKS)}")
        return cls(
            interval=float(config.get("interval", 43200)),
            checks=checks,
            root=Path(config.get("root", "/")),
            proc=Path(config.get("proc", "/proc")),
            sys=Path(config.get("sys", "/sys")),
            ports=_port_range(config.get("ports", (1, 65535))),
            system_dirs=tuple(config.get("system_dirs", SYSTEM_DIRS)),
            setuid_allow=tuple(config.get("setuid_allow", ())),
            dev_allow=DEV_ALLOW + tuple(config.get("dev_allow", ())),
            budget_seconds=float(config.get("budget_seconds", 0.2)),
        )

    def plan(self, signatures: Mapping[str, Any]) -> dict[str, Callable[[], Check]]:
        """Return a way to start each check with this configuration."""
        return {
            "files": lambda: check_signature_files(root=self.root, signatures=signatures),
            "trojans": lambda: check_trojans(root=self.root, signatures=signatures),
            "modules": lambda: check_kernel_modules(
                proc=self.proc, sys=self.sys, signatures=signatures
            ),
            "processes": lambda: check_hidden_processes(proc=self.proc),
            "ports": lambda: check_hidden_ports(proc=self.proc, ports=self.ports),
            "interfaces": lambda: check_promiscuous_interfaces(sys=self.sys),
            "dev": lambda: check_dev(root=self.root, allow=self.dev_allow),
            "permissions": lambda: check_permissions(
                root=self.root,
                dirs=self.system_dirs,
                setuid_allow=(*signatures["setuid_expected"], *self.setuid_allow),
            ),
        }


class RootcheckCollector:
    """Runs every check at start and then every `interval` seconds, a slice per collect()."""

    name = "rootcheck"

    def __init__(self, config: RootcheckConfig, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self._signatures = load_signatures()
        self._run: Check | None = None
        self._next_run = 0.0
        self._started = 0.0
        self._found = 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state_dir: Path) -> RootcheckCollector:
        """Build a collector from the agent's `rootcheck` configuration."""
        return cls(RootcheckConfig.from_mapping(config), state_dir)

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Use a new configuration from the next run on (raises ValueError if invalid)."""
        self.config = RootcheckConfig.from_mapping(config)
        self._next_run = min(self._next_run, self._started + self.config.interval)

    def close(self) -> None:
        """Stop a run under way."""
        self._run = None

    @property
    def running(self) -> bool:
        """Whether a run is under way."""
        return self._run is not None

    def collect(self, outbox: Outbox, now: float) -> int:
        """Advance the checks for about `budget_seconds`; write findings to the outbox."""
        if self._run is None:
            if now < self._next_run:
                return 0
            self._run, self._started, self._found = self._run_all(), now, 0
            self._next_run = now + self.config.interval
        deadline = time.monotonic() + self.config.budget_seconds
        events, finished = [], False
        while not finished:
            item = _step(self._run)
            finished = item is StopIteration
            if isinstance(item, Finding):
                events.append(item.event())
            if time.monotonic() >= deadline:
                break
        self._found += len(events)
        if not finished:
            return outbox.add(events) if events else 0
        self._run = None
        return outbox.add([*events, self._summary()], {POSITION: _iso(time.time())})

    def _run_all(self) -> Check:
        plan = self.config.plan(self._signatures)
        for name in self.config.checks:
            try:
                yield from plan[name]()
            except Exception as error:  # a broken check must not stop the others
                yield Finding(name, "Rootcheck error", f"check {name} failed: {error!r}")

    def _summary(self) -> dict[str, Any]:
        return {
            "module": "rootcheck",
            "title": "Rootcheck finished",
            "check": "summary",
            "full_log": f"rootcheck finished: {self._found} findings "
            f"from {len(self.config.checks)} checks",
            "findings": self._found,
            "timestamp": _iso(time.time()),
        }
