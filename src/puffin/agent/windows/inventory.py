"""The inventory on Windows: the same snapshot and change events as on Linux, with the OS
from the registry, programs from the Uninstall keys and local accounts from the SAM.

- `os`: ProductName, DisplayVersion, build and update revision, edition and install date
  from `HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion` (a build from 22000 on is
  Windows 11, whatever ProductName says);
- `hardware`: psutil, with the CPU's name from `HARDWARE\\DESCRIPTION\\System\\
  CentralProcessor\\0`; `network`, `ports` and `processes`: psutil, as on Linux;
- `packages`: the programs "Apps & features" lists, from the Uninstall keys of HKLM
  (`architecture` x64), of WOW6432Node (x86) and of each loaded user hive (`source`
  `programs:SID`): entries with a DisplayName that are neither system components nor
  updates of another program;
- `users`: local accounts (`NetUserEnum` level 3 through pywin32's win32net) with their
  relative id as `uid`, profile folder as `home`, and whether they are disabled or
  administrators. Besides "User added" / "User removed", a change of either is a
  "User changed" event naming what changed.

The registry and the account list sit behind `Registry` and a function, so tests drive
the collector with a fake `winreg` and recorded accounts.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from puffin.agent import inventory as base
from puffin.agent.outbox import Outbox
from puffin.agent.windows.registry import KeyMissing, Registry, RegistryError, user_hives

NT_VERSION = r"SOFTWARE\Microsoft\Windows NT\CurrentVersion"
CPU_KEY = r"HARDWARE\DESCRIPTION\System\CentralProcessor\0"
UNINSTALL = r"Microsoft\Windows\CurrentVersion\Uninstall"
UPDATE_RELEASE_TYPES = frozenset({"Security Update", "Update Rollup", "Hotfix", "Update"})
WINDOWS_11_BUILD = 22000
UF_ACCOUNTDISABLE = 0x0002
USER_PRIV_ADMIN = 2
FILTER_NORMAL_ACCOUNT = 0x0002

Accounts = Callable[[], list[dict[str, Any]]]


def _values(registry: Registry, hive: str, path: str) -> dict[str, Any]:
    return {value.name: value.data for value in registry.values(hive, path)}


def windows_os(registry: Registry) -> dict[str, Any]:
    """Return the Windows version facts (see the module)."""
    info = _values(registry, "HKLM", NT_VERSION)
    build = str(info.get("CurrentBuildNumber") or info.get("CurrentBuild") or "")
    name = str(info.get("ProductName") or "Windows")
    if build.isdigit() and int(build) >= WINDOWS_11_BUILD and name.startswith("Windows 10"):
        name = "Windows 11" + name[len("Windows 10") :]
    release = str(info.get("DisplayVersion") or info.get("ReleaseId") or "")
    full_build = f"{build}.{info['UBR']}" if build and isinstance(info.get("UBR"), int) else build
    installed = info.get("InstallDate")
    facts: dict[str, Any] = {
        "system": "Windows",
        "name": name,
        "version": release,
        "build": full_build,
        "edition": str(info.get("EditionID") or ""),
        "kernel": full_build,
        "architecture": platform.machine(),
        "hostname": socket.gethostname(),
        "pretty_name": " ".join(p for p in (name, release) if p)
        + (f" (build {full_build})" if full_build else ""),
    }
    if isinstance(installed, int) and installed > 0:
        facts["installed"] = base._iso(installed)
    return facts


def windows_hardware(registry: Registry) -> dict[str, Any]:
    """Return psutil's hardware facts with the CPU's name from the registry."""
    facts = base.hardware_facts(Path("/nonexistent-cpuinfo"))
    try:
        cpu = _values(registry, "HKLM", CPU_KEY).get("ProcessorNameString")
    except RegistryError:
        cpu = None
    if isinstance(cpu, str) and cpu.strip():
        facts["cpu_model"] = cpu.strip()
    return facts


def _program(
    entry: Mapping[str, Any], architecture: str, source: str, key: str
) -> dict[str, Any] | None:
    name = entry.get("DisplayName")
    if not isinstance(name, str) or not name.strip():
        return None
    if entry.get("SystemComponent") == 1 or entry.get("ParentKeyName"):
        return None
    if entry.get("ReleaseType") in UPDATE_RELEASE_TYPES:
        return None
    return {
        "name": name.strip(),
        "version": str(entry.get("DisplayVersion") or ""),
        "architecture": architecture,
        "source": source,
        "publisher": str(entry.get("Publisher") or ""),
        "install_date": str(entry.get("InstallDate") or ""),
        "key": key,
    }


def programs(registry: Registry) -> list[dict[str, Any]]:
    """Return the installed programs from every Uninstall key (see the module)."""
    places = [
        ("HKLM", rf"SOFTWARE\{UNINSTALL}", "x64", "programs"),
        ("HKLM", rf"SOFTWARE\WOW6432Node\{UNINSTALL}", "x86", "programs"),
    ]
    with contextlib.suppress(RegistryError):  # HKEY_USERS unreadable: machine programs only
        places += [("HKU", rf"{sid}\Software\{UNINSTALL}", "", f"programs:{sid}")
                   for sid in user_hives(registry)]  # fmt: skip
    found: dict[str, dict[str, Any]] = {}
    for hive, path, architecture, source in places:
        try:
            keys = registry.subkeys(hive, path)
        except KeyMissing:
            continue  # a 32-bit Windows has no WOW6432Node; a user may have no programs
        for key in keys:
            try:
                entry = _values(registry, hive, rf"{path}\{key}")
            except RegistryError:
                continue
            program = _program(entry, architecture, source, key)
            if program is not None:
                found.setdefault(base._package_key(program), program)
    return sorted(found.values(), key=base._package_key)[: base.MAX_ROWS]


def account_from_user_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """Return an account from a USER_INFO_3 dict as win32net.NetUserEnum gives it."""
    flags = int(info.get("flags") or 0)
    last = int(info.get("last_logon") or 0)
    return {
        "name": str(info.get("name", "")),
        "uid": int(info.get("user_id") or 0),
        "full_name": str(info.get("full_name") or ""),
        "home": str(info.get("profile") or info.get("home_dir") or ""),
        "shell": "",
        "disabled": bool(flags & UF_ACCOUNTDISABLE),
        "administrator": info.get("priv") == USER_PRIV_ADMIN,
        "last_logon": base._iso(last) if last > 0 else None,
        "interactive": not flags & UF_ACCOUNTDISABLE,
    }


def local_accounts() -> list[dict[str, Any]]:
    """Return this machine's local accounts through pywin32 (Windows only)."""
    try:
        import pywintypes
        import win32net
    except ImportError as error:
        raise OSError("listing accounts needs pywin32 (pip install 'puffin-mdr[agent]')") from error
    accounts: list[dict[str, Any]] = []
    resume = 0
    try:
        while True:
            rows, _total, resume = win32net.NetUserEnum(None, 3, FILTER_NORMAL_ACCOUNT, resume)
            accounts += [account_from_user_info(row) for row in rows]
            if not resume or len(accounts) >= base.MAX_ROWS:
                break
    except pywintypes.error as error:
        raise OSError(f"NetUserEnum failed: {error}") from error
    return accounts


def _account_event(title: str, user: Mapping[str, Any], changed: list[str]) -> dict[str, Any]:
    flags = [word for word, on in (("disabled", user.get("disabled")),
                                   ("administrator", user.get("administrator"))) if on]  # fmt: skip
    extra = f", {', '.join(flags)}" if flags else ""
    what = f"; changed: {', '.join(changed)}" if changed else ""
    return base._event(
        title,
        f"{title}: {user['name']} (rid {user['uid']}{extra}){what}",
        user=user["name"],
        uid=user["uid"],
        home=user.get("home", ""),
        disabled=bool(user.get("disabled")),
        administrator=bool(user.get("administrator")),
        changed=changed,
    )


def account_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return events for accounts added, removed, enabled or disabled, or made administrator."""
    before = {user["name"].lower(): user for user in old}
    after = {user["name"].lower(): user for user in new}
    events = [_account_event("User added", after[k], []) for k in sorted(after.keys() - before)]
    events += [_account_event("User removed", before[k], []) for k in sorted(before.keys() - after)]
    for key in sorted(after.keys() & before.keys()):
        changed = [f for f in ("disabled", "administrator", "uid")
                   if before[key].get(f) != after[key].get(f)]  # fmt: skip
        if changed:
            events.append(_account_event("User changed", after[key], changed))
    return events


class WindowsInventoryCollector(base.InventoryCollector):
    """The inventory collector with Windows sections (see the module)."""

    def __init__(
        self,
        state_dir: Path,
        *,
        registry: Registry,
        accounts: Accounts,
        interval: float = base.DEFAULT_INTERVAL,
        max_processes: int = base.DEFAULT_MAX_PROCESSES,
    ) -> None:
        super().__init__(state_dir, interval=interval, max_processes=max_processes)
        self.registry = registry
        self.accounts = accounts

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        state_dir: Path,
        *,
        registry_factory: Callable[[], Registry] | None = None,
        accounts: Accounts | None = None,
    ) -> WindowsInventoryCollector:
        """Build from `{"interval": 3600, "max_processes": 2000}` (Windows unless given seams)."""
        if registry_factory is None or accounts is None:
            if sys.platform != "win32":
                raise ValueError("inventory: the Windows inventory runs only on Windows")
            from puffin.agent.windows.registry import WinregRegistry

            registry_factory = registry_factory or WinregRegistry
            accounts = accounts or local_accounts
        interval = max(float(config.get("interval", base.DEFAULT_INTERVAL)), base.MIN_INTERVAL)
        limit = max(int(config.get("max_processes", base.DEFAULT_MAX_PROCESSES)), 1)
        return cls(
            state_dir,
            registry=registry_factory(),
            accounts=accounts,
            interval=interval,
            max_processes=limit,
        )

    def snapshot(self) -> tuple[dict[str, Any], dict[str, str]]:
        """Return the inventory, and for each section that could not be read, why."""
        sections: dict[str, Callable[[], Any]] = {
            "os": lambda: windows_os(self.registry),
            "hardware": lambda: windows_hardware(self.registry),
            "network": base.network_interfaces,
            "ports": base.listening_ports,
            "processes": lambda: base.processes(self.max_processes),
            "packages": lambda: programs(self.registry),
            "users": self.accounts,
        }
        return base.read_sections(sections)

    def collect(self, outbox: Outbox, now: float) -> int:
        """Take and send a snapshot if one is due, with the changes since the last."""
        if now < self._next_due:
            return 0
        self._next_due = now + self.interval
        current, errors = self.snapshot()
        previous = self._load()
        events = [base._snapshot_event(current)]
        if previous:
            old = previous.get("inventory", {})
            events += base.changes(
                {k: v for k, v in old.items() if k != "users"},
                {k: v for k, v in current.items() if k != "users"},
            )
            if "users" in old and "users" in current:
                events += account_changes(old["users"], current["users"])
        if errors and errors != previous.get("errors"):
            events.append(base._incomplete_event(errors))
        written = outbox.add(events)
        self._save({"inventory": current, "errors": errors})
        self._taken_at, self._unreadable = base._iso(time.time()), sorted(errors)
        return written
