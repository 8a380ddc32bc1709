"""The endpoint's inventory (OS, hardware, network, ports, processes, packages, users) sent
as one snapshot at start and every `interval`, with events for what changed since the last.

The snapshot is one event `module: "inventory"`, `title: "Inventory"`, `inventory: {os,
hardware, network, ports, processes, processes_total, packages, users}`, bounded in size
(at most `max_processes` processes, command lines cut to 1 KiB). Changes against the
previous snapshot, kept in `inventory.json` in the state directory, become events titled
"Package installed" / "Package removed" / "Package updated" (`package`, `version`,
`previous_version`, `architecture`, `package_source`), "Port opened" / "Port closed"
(`protocol`, `address`, `port`, `process_name`, `pid`) and "User added" / "User removed"
(`user`, `uid`, `home`, `shell`). The first snapshot reports no changes.

A section that cannot be read (a missing file, no permission as a non-root agent) is left
out of the snapshot and of the comparison, so an unreadable package database never looks
like every package removed; one "Inventory incomplete" event says why, again only when
the reasons change. The events are written before the snapshot file is replaced: a crash
in between repeats a change event once rather than losing it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from puffin.agent.outbox import Outbox

STATE_FILE = "inventory.json"
DEFAULT_INTERVAL = 3600.0
MIN_INTERVAL = 60.0
DEFAULT_MAX_PROCESSES = 2000
MAX_CMDLINE = 1024
MAX_ROWS = 20_000
RPM_QUERY = "%{NAME}\t%{VERSION}-%{RELEASE}\t%{ARCH}\n"
NO_LOGIN_SHELLS = ("nologin", "false", "sync", "halt", "shutdown")


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _key_values(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("\"'")
    return values


def os_facts(os_release: Path) -> dict[str, Any]:
    """Return the OS name and version (`/etc/os-release`) and the kernel."""
    facts: dict[str, Any] = {
        "system": platform.system(),
        "kernel": platform.release(),
        "architecture": platform.machine(),
        "hostname": socket.gethostname(),
    }
    if os_release.is_file():
        release = _key_values(os_release)
        for key in ("NAME", "VERSION", "ID", "VERSION_ID", "PRETTY_NAME", "VERSION_CODENAME"):
            if key in release:
                facts[key.lower()] = release[key]
    return facts


def _cpu_model(cpuinfo: Path) -> str:
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model", "Model"):
                return value.strip()
    return platform.processor()


def hardware_facts(cpuinfo: Path) -> dict[str, Any]:
    """Return CPU count and model, memory and boot time."""
    return {
        "cpu_model": _cpu_model(cpuinfo),
        "cpu_logical": psutil.cpu_count(logical=True),
        "cpu_physical": psutil.cpu_count(logical=False),
        "memory_bytes": psutil.virtual_memory().total,
        "boot_time": _iso(psutil.boot_time()),
    }


def network_interfaces() -> list[dict[str, Any]]:
    """Return each interface with its MAC, addresses and state."""
    stats = psutil.net_if_stats()
    interfaces = []
    for name, addresses in sorted(psutil.net_if_addrs().items()):
        state = stats.get(name)
        interfaces.append(
            {
                "name": name,
                "mac": next((a.address for a in addresses if a.family == psutil.AF_LINK), ""),
                "ipv4": [a.address for a in addresses if a.family == socket.AF_INET],
                "ipv6": [a.address.split("%")[0] for a in addresses if a.family == socket.AF_INET6],
                "up": bool(state and state.isup),
                "mtu": state.mtu if state else None,
            }
        )
    return interfaces


def _process_name(pid: int | None) -> str:
    if not pid:
        return ""
    try:
        return str(psutil.Process(pid).name())
    except psutil.Error:
        return ""


def listening_ports() -> list[dict[str, Any]]:
    """Return listening TCP sockets and bound, unconnected UDP sockets with their process."""
    ports = []
    for conn in psutil.net_connections(kind="inet"):
        tcp = conn.type == socket.SOCK_STREAM
        if (
            not conn.laddr
            or (tcp and conn.status != psutil.CONN_LISTEN)
            or (not tcp and conn.raddr)
        ):
            continue
        ipv6 = conn.family == socket.AF_INET6
        ports.append(
            {
                "protocol": ("tcp" if tcp else "udp") + ("6" if ipv6 else ""),
                "address": conn.laddr.ip,
                "port": conn.laddr.port,
                "pid": conn.pid,
                "process_name": _process_name(conn.pid),
            }
        )
    unique = {_port_key(port): port for port in ports}
    return [unique[key] for key in sorted(unique)][:MAX_ROWS]


def processes(limit: int) -> tuple[list[dict[str, Any]], int]:
    """Return up to `limit` processes (pid order) and how many there are."""
    attrs = ["pid", "ppid", "name", "username", "cmdline", "create_time"]
    found = sorted(
        (proc.info for proc in psutil.process_iter(attrs, ad_value=None)),
        key=lambda info: info["pid"],
    )
    listed = []
    for info in found[:limit]:
        cmdline = " ".join(info["cmdline"] or [])[:MAX_CMDLINE]
        started = info["create_time"]
        listed.append(
            {
                "pid": info["pid"],
                "ppid": info["ppid"],
                "name": info["name"] or "",
                "user": info["username"] or "",
                "cmdline": cmdline,
                "started": _iso(started) if started else None,
            }
        )
    return listed, len(found)


def dpkg_packages(status: Path) -> list[dict[str, Any]]:
    """Return the installed packages recorded in dpkg's status file."""
    packages = []
    record: dict[str, str] = {}
    for line in [*status.read_text(errors="replace").splitlines(), ""]:
        if not line.strip():
            if record.get("Status", "").endswith(" installed") and "Package" in record:
                packages.append(
                    {
                        "name": record["Package"],
                        "version": record.get("Version", ""),
                        "architecture": record.get("Architecture", ""),
                        "source": "dpkg",
                    }
                )
            record = {}
        elif not line[0].isspace():
            key, _, value = line.partition(":")
            record[key] = value.strip()
    return packages[:MAX_ROWS]


def rpm_packages(rpm: str) -> list[dict[str, Any]]:
    """Return the packages rpm knows about."""
    result = subprocess.run(  # noqa: S603 - fixed argument list
        [rpm, "-qa", "--queryformat", RPM_QUERY],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise OSError(f"rpm -qa failed ({result.returncode}): {result.stderr.strip()[:200]}")
    packages = []
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            name, version, arch = parts
            packages.append(
                {"name": name, "version": version, "architecture": arch, "source": "rpm"}
            )
    return packages[:MAX_ROWS]


def users(passwd: Path) -> list[dict[str, Any]]:
    """Return the local accounts in the passwd file."""
    accounts = []
    for line in passwd.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) != 7 or line.startswith("#") or not fields[2].isdigit():
            continue
        name, _, uid, gid, gecos, home, shell = fields
        accounts.append(
            {
                "name": name,
                "uid": int(uid),
                "gid": int(gid) if gid.isdigit() else None,
                "gecos": gecos,
                "home": home,
                "shell": shell,
                "interactive": not shell.rstrip("/").endswith(NO_LOGIN_SHELLS),
            }
        )
    return accounts[:MAX_ROWS]


def _port_key(port: Mapping[str, Any]) -> str:
    return f"{port['protocol']}/{port['address']}:{port['port']}"


def _package_key(package: Mapping[str, Any]) -> str:
    return f"{package['source']}:{package['name']}:{package['architecture']}"


class InventoryCollector:
    """Takes a snapshot when due, writes it and the changes, keeps it for next time."""

    name = "inventory"

    def __init__(
        self,
        state_dir: Path,
        *,
        interval: float = DEFAULT_INTERVAL,
        max_processes: int = DEFAULT_MAX_PROCESSES,
        os_release: Path = Path("/etc/os-release"),
        passwd: Path = Path("/etc/passwd"),
        dpkg_status: Path = Path("/var/lib/dpkg/status"),
        cpuinfo: Path = Path("/proc/cpuinfo"),
        rpm: str | None = None,
    ) -> None:
        self.state_file = state_dir / STATE_FILE
        self.interval = interval
        self.max_processes = max_processes
        self.paths = {"os_release": os_release, "passwd": passwd, "dpkg": dpkg_status}
        self.cpuinfo = cpuinfo
        self.rpm = rpm
        self._next_due = 0.0
        self._taken_at: str | None = None
        self._unreadable: list[str] = []

    @classmethod
    def from_config(cls, config: Mapping[str, Any], state_dir: Path) -> InventoryCollector:
        """Build from `{"interval": 3600, "max_processes": 2000}`; rpm is used if installed."""
        interval = max(float(config.get("interval", DEFAULT_INTERVAL)), MIN_INTERVAL)
        limit = int(config.get("max_processes", DEFAULT_MAX_PROCESSES))
        return cls(
            state_dir, interval=interval, max_processes=max(limit, 1), rpm=shutil.which("rpm")
        )

    def collect(self, outbox: Outbox, now: float) -> int:
        """Take and send a snapshot if one is due, with the changes since the last."""
        if now < self._next_due:
            return 0
        self._next_due = now + self.interval
        current, errors = self.snapshot()
        previous = self._load()
        events = [_snapshot_event(current)]
        if previous:
            events += changes(previous.get("inventory", {}), current)
        if errors and errors != previous.get("errors"):
            events.append(_incomplete_event(errors))
        written = outbox.add(events)
        self._save({"inventory": current, "errors": errors})
        self._taken_at, self._unreadable = _iso(time.time()), sorted(errors)
        return written

    def status(self) -> dict[str, Any]:
        """Return when the last snapshot was taken and which sections it could not read."""
        return {
            "last_snapshot": self._taken_at,
            "interval": self.interval,
            "unreadable": self._unreadable,
        }

    def snapshot(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Return the inventory, and for each section that could not be read, why."""
        sections: dict[str, Callable[[], Any]] = {
            "os": lambda: os_facts(self.paths["os_release"]),
            "hardware": lambda: hardware_facts(self.cpuinfo),
            "network": network_interfaces,
            "ports": listening_ports,
            "processes": lambda: processes(self.max_processes),
            "packages": self._packages,
            "users": lambda: users(self.paths["passwd"]),
        }
        return read_sections(sections)

    def _packages(self) -> list[dict[str, Any]]:
        dpkg, rpm = self.paths["dpkg"], self.rpm
        if not dpkg.exists() and rpm is None:
            return []  # neither package manager: an empty list, not an error
        found = dpkg_packages(dpkg) if dpkg.exists() else []
        return found + (rpm_packages(rpm) if rpm else [])

    def _load(self) -> dict[str, Any]:
        try:
            loaded = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save(self, state: dict[str, Any]) -> None:
        """Replace the snapshot file atomically (a crash leaves the old or the new one)."""
        fd, temporary = tempfile.mkstemp(dir=self.state_file.parent, prefix=".inventory-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle, separators=(",", ":"))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.state_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def close(self) -> None:
        """Nothing to release."""


def _event(title: str, full_log: str, **fields: Any) -> dict[str, Any]:
    return {
        "module": "inventory",
        "title": title,
        **fields,
        "full_log": full_log,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _snapshot_event(inventory: dict[str, Any]) -> dict[str, Any]:
    system = inventory.get("os", {})
    summary = (
        f"inventory: {system.get('pretty_name') or system.get('system', '?')}, "
        f"{len(inventory.get('packages', []))} packages, "
        f"{inventory.get('processes_total', 0)} processes, "
        f"{len(inventory.get('ports', []))} listening ports, "
        f"{len(inventory.get('users', []))} users"
    )
    return _event("Inventory", summary, inventory=inventory)


def _incomplete_event(errors: dict[str, str]) -> dict[str, Any]:
    reasons = "; ".join(f"{name}: {reason}" for name, reason in errors.items())
    return _event("Inventory incomplete", f"inventory incomplete: {reasons}", sections=errors)


def changes(previous: Mapping[str, Any], current: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return events for packages, ports and users that differ between two snapshots.

    A section missing from either snapshot (unreadable at the time) is not compared.
    """
    events: list[dict[str, Any]] = []
    if "packages" in previous and "packages" in current:
        events += _package_changes(previous["packages"], current["packages"])
    if "ports" in previous and "ports" in current:
        events += _port_changes(previous["ports"], current["ports"])
    if "users" in previous and "users" in current:
        events += _user_changes(previous["users"], current["users"])
    return events


def _package_event(title: str, package: Mapping[str, Any], before: str = "") -> dict[str, Any]:
    version = package["version"]
    change = f"{before} -> {version}" if before else version
    return _event(
        title,
        f"{title}: {package['name']} {change} ({package['architecture']}, {package['source']})",
        package=package["name"],
        version=version,
        previous_version=before or None,
        architecture=package["architecture"],
        package_source=package["source"],
    )


def _package_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = {_package_key(p): p for p in old}
    after = {_package_key(p): p for p in new}
    events = [_package_event("Package installed", after[k]) for k in sorted(after.keys() - before)]
    events += [_package_event("Package removed", before[k]) for k in sorted(before.keys() - after)]
    for key in sorted(after.keys() & before.keys()):
        if after[key]["version"] != before[key]["version"]:
            events.append(_package_event("Package updated", after[key], before[key]["version"]))
    return events


def _port_event(title: str, port: Mapping[str, Any]) -> dict[str, Any]:
    owner = f" by {port['process_name']} (pid {port['pid']})" if port.get("pid") else ""
    return _event(
        title,
        f"{title}: {port['protocol']} {port['address']}:{port['port']}{owner}",
        protocol=port["protocol"],
        address=port["address"],
        port=port["port"],
        process_name=port.get("process_name", ""),
        pid=port.get("pid"),
    )


def _port_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = {_port_key(p): p for p in old}
    after = {_port_key(p): p for p in new}
    events = [_port_event("Port opened", after[k]) for k in sorted(after.keys() - before)]
    return events + [_port_event("Port closed", before[k]) for k in sorted(before.keys() - after)]


def _user_event(title: str, user: Mapping[str, Any]) -> dict[str, Any]:
    return _event(
        title,
        f"{title}: {user['name']} (uid {user['uid']}, home {user['home']}, shell {user['shell']})",
        user=user["name"],
        uid=user["uid"],
        home=user["home"],
        shell=user["shell"],
    )


def _user_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    before = {u["name"]: u for u in old}
    after = {u["name"]: u for u in new}
    events = [_user_event("User added", after[name]) for name in sorted(after.keys() - before)]
    return events + [_user_event("User removed", before[n]) for n in sorted(before.keys() - after)]


def read_sections(
    sections: Mapping[str, Callable[[], Any]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Read each inventory section; return what was read and, per failed section, why.

    The `processes` reader returns (processes, total); the total is kept beside them.
    """
    inventory: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, read in sections.items():
        try:
            inventory[name] = read()
        except (OSError, psutil.Error, subprocess.SubprocessError) as error:
            errors[name] = f"{type(error).__name__}: {error}"
    if "processes" in inventory:
        inventory["processes"], inventory["processes_total"] = inventory["processes"]
    return inventory, errors
