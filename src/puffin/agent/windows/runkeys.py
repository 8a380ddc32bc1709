"""Registry run keys: the values Windows starts programs from, compared with a snapshot.

Every `interval` seconds the collector reads the watched keys and compares them with the
snapshot of the last read: a value that appeared is "Registry value added", one whose type
or data changed "Registry value modified", one that went "Registry value deleted". The
first read of a key records it silently (one "Registry baseline" event counts what was
recorded). The snapshot is saved as the outbox position `registry`, in the same
transaction as the events found against it, so a crash neither loses nor repeats a change.

Watched by default (machine keys in HKLM, the 32-bit view under WOW6432Node too):
`…\\CurrentVersion\\Run`, `RunOnce`, `RunServices`, `RunServicesOnce` and
`Policies\\Explorer\\Run`; Winlogon's `Shell`, `Userinit` and `Taskman`; the Session
Manager's `BootExecute`. `HKCU\\…` keys (`Run`, `RunOnce`, `Policies\\Explorer\\Run`, the
legacy `Windows\\Load` and `Windows\\Run`, Winlogon's `Shell`) are read in every user hive
loaded under HKEY_USERS: the agent runs as SYSTEM, whose own HKCU is not a user's. A hive
that is not loaded (its user is logged off) keeps its last snapshot and is compared again
when it is loaded next; a key that is refused is reported once ("Registry incomplete")
and also keeps its snapshot.

Configuration (`registry` section): `interval` (seconds, default 300, at least 10), `keys`
(added to the defaults: `"HKLM\\\\path"`, `"HKCU\\\\path"`, or `{"key": …, "values": [names]}` to
watch only some values of a key), `defaults` (false to watch only `keys`).

Events carry `registry_key`, `registry_value` ("(Default)" for the unnamed value),
`value_type`, `data` (and `type_before`/`data_before`), `user_sid` for a user hive, and
Sysmon's names for the same facts: `TargetObject` (key and value), `Details` (the data as
text) and `EventType` (`SetValue`, `DeleteValue`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puffin.agent.outbox import Outbox
from puffin.agent.windows.registry import (
    KeyDenied,
    KeyMissing,
    Registry,
    RegistryError,
    Value,
    user_hives,
)

MODULE = "registry"
POSITION = "registry"
DEFAULT_INTERVAL = 300.0
MIN_INTERVAL = 10.0
MAX_KEYS = 500
CURRENT_VERSION = r"Microsoft\Windows\CurrentVersion"
MACHINE_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *(
        (rf"HKLM\SOFTWARE\{node}{CURRENT_VERSION}\{leaf}", ())
        for node in ("", "WOW6432Node\\")
        for leaf in ("Run", "RunOnce", "RunServices", "RunServicesOnce", r"Policies\Explorer\Run")
    ),
    (r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon",
     ("Shell", "Userinit", "Taskman")),
    (r"HKLM\SYSTEM\CurrentControlSet\Control\Session Manager", ("BootExecute",)),
)  # fmt: skip
USER_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (rf"HKCU\Software\{CURRENT_VERSION}\Run", ()),
    (rf"HKCU\Software\{CURRENT_VERSION}\RunOnce", ()),
    (rf"HKCU\Software\{CURRENT_VERSION}\Policies\Explorer\Run", ()),
    (r"HKCU\Software\Microsoft\Windows NT\CurrentVersion\Windows", ("Load", "Run")),
    (r"HKCU\Software\Microsoft\Windows NT\CurrentVersion\Winlogon", ("Shell",)),
)
HIVE_NAMES = {
    "HKLM": "HKLM",
    "HKEY_LOCAL_MACHINE": "HKLM",
    "HKU": "HKU",
    "HKEY_USERS": "HKU",
    "HKCU": "HKCU",
    "HKEY_CURRENT_USER": "HKCU",
}
TITLES = {
    "added": "Registry value added",
    "modified": "Registry value modified",
    "deleted": "Registry value deleted",
}


@dataclass(frozen=True)
class WatchedKey:
    """One key to watch: `HKLM\\path` or `HKCU\\path` (every user hive), some values or all."""

    key: str
    values: tuple[str, ...] = ()

    @property
    def hive(self) -> str:
        return self.key.partition("\\")[0]

    @property
    def path(self) -> str:
        return self.key.partition("\\")[2]


def _watched(item: Any) -> WatchedKey:
    if isinstance(item, str):
        item = {"key": item}
    if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
        raise ValueError("registry: each key must be 'HIVE\\\\path' or {'key', 'values'}")
    hive, _, path = item["key"].strip().replace("/", "\\").partition("\\")
    path = path.strip("\\")
    if hive.upper() not in HIVE_NAMES or not path:
        raise ValueError(f"registry: {item['key']!r} must start with HKLM\\, HKCU\\ or HKU\\")
    if len(path) > 1024 or any(ord(ch) < 32 for ch in path):
        raise ValueError(f"registry: {item['key']!r} is not a valid key path")
    names = item.get("values", [])
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise ValueError(f"registry: the values of {item['key']} must be a list of names")
    return WatchedKey(f"{HIVE_NAMES[hive.upper()]}\\{path}", tuple(names))


@dataclass(frozen=True)
class RunKeyConfig:
    """Which keys to watch and how often."""

    keys: tuple[WatchedKey, ...]
    interval: float = DEFAULT_INTERVAL

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> RunKeyConfig:
        """Validate the `registry` section; raise ValueError with the reason."""
        extra = config.get("keys", [])
        if isinstance(extra, str) or not isinstance(extra, list | tuple):
            raise ValueError("registry: keys must be a list")
        keys: list[WatchedKey] = []
        if config.get("defaults", True) is not False:
            keys += [WatchedKey(key, values) for key, values in MACHINE_KEYS + USER_KEYS]
        for item in extra:
            watched = _watched(item)
            if watched.key.lower() not in {k.key.lower() for k in keys}:
                keys.append(watched)
        if not keys or len(keys) > MAX_KEYS:
            raise ValueError(f"registry: watch from 1 to {MAX_KEYS} keys")
        try:
            interval = float(config.get("interval", DEFAULT_INTERVAL))
        except (TypeError, ValueError) as error:
            raise ValueError(f"registry: interval: {error}") from error
        if interval < MIN_INTERVAL:
            raise ValueError(f"registry: interval must be at least {MIN_INTERVAL:g} seconds")
        return cls(tuple(keys), interval)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def details(kind: str, data: Any) -> str:
    """Return a value's data as one line of text, as Sysmon's `Details` writes it."""
    if kind in ("REG_DWORD", "REG_DWORD_BIG_ENDIAN") and isinstance(data, int):
        return f"DWORD (0x{data:08x})"
    if kind == "REG_QWORD" and isinstance(data, int):
        return f"QWORD (0x{data >> 32:08x}-0x{data & 0xFFFFFFFF:08x})"
    if isinstance(data, list):
        return " ".join(data)
    if isinstance(data, str) and kind in ("REG_SZ", "REG_EXPAND_SZ"):
        return data
    return "Binary Data" if data else "(Empty)"


def _value_name(name: str) -> str:
    return name or "(Default)"


class RunKeyCollector:
    """Reads the watched keys when due and writes what changed since the last read."""

    name = "registry"

    def __init__(self, config: RunKeyConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self._next_due = 0.0
        self._last_read: str | None = None
        self._unreadable: dict[str, str] = {}

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        state_dir: Path,
        *,
        registry_factory: Callable[[], Registry] | None = None,
    ) -> RunKeyCollector:
        """Build from the `registry` section with `winreg` (Windows only)."""
        parsed = RunKeyConfig.from_mapping(config)
        if registry_factory is None:
            if sys.platform != "win32":
                raise ValueError("registry: the Windows registry exists only on Windows")
            from puffin.agent.windows.registry import WinregRegistry

            registry_factory = WinregRegistry
        return cls(parsed, registry_factory())

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Watch other keys from the next read on (new keys are baselined silently)."""
        self.config = RunKeyConfig.from_mapping(config)
        self._next_due = 0.0

    def status(self) -> dict[str, Any]:
        """Return when the keys were last read and which could not be."""
        return {
            "last_read": self._last_read,
            "interval": self.config.interval,
            "keys": len(self.config.keys),
            "unreadable": sorted(self._unreadable),
        }

    def close(self) -> None:
        """Nothing to release."""

    # reading --------------------------------------------------------------------------

    def _user_hives(self) -> tuple[list[str], str | None]:
        try:
            return user_hives(self.registry), None
        except RegistryError as error:
            return [], str(error)

    def read(self) -> tuple[dict[str, dict[str, Any]], dict[str, str], set[str]]:
        """Return {key: {value name: {type, data}}} for the keys read, the errors by key,
        and the keys still configured (read or not), to keep their snapshot."""
        current: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        configured: set[str] = set()
        sids, problem = (
            self._user_hives() if any(k.hive == "HKCU" for k in self.config.keys) else ([], None)
        )
        if problem:
            errors["HKU"] = problem
        for watched in self.config.keys:
            if watched.hive == "HKCU":
                targets = [(f"HKU\\{sid}\\{watched.path}", "HKU", f"{sid}\\{watched.path}")
                           for sid in sids]  # fmt: skip
                configured.add(watched.key)  # unloaded hives: matched by suffix below
            else:
                targets = [(watched.key, watched.hive, watched.path)]
            for name, hive, path in targets:
                configured.add(name)
                try:
                    values = self.registry.values(hive, path)
                except KeyMissing:
                    values = []
                except (KeyDenied, RegistryError) as error:
                    errors[name] = str(error)
                    continue
                current[name] = _selected(values, watched.values)
        return current, errors, configured

    # collecting -----------------------------------------------------------------------

    def collect(self, outbox: Outbox, now: float) -> int:
        """Read the keys if due; write the changes and the new snapshot in one transaction."""
        if now < self._next_due:
            return 0
        self._next_due = now + self.config.interval
        previous = _load(outbox.position(POSITION))
        current, errors, configured = self.read()
        events: list[dict[str, Any]] = []
        baselined: list[str] = []
        for key in sorted(current):
            if key in previous["keys"]:
                events += _changes(key, previous["keys"][key], current[key])
            else:
                baselined.append(key)
        if baselined:
            events.append(_baseline_event(baselined, current))
        if errors and errors != previous.get("errors"):
            events.append(_incomplete_event(errors))
        kept = {
            key: values
            for key, values in previous["keys"].items()
            if key not in current and _still_watched(key, configured)
        }
        snapshot = {"keys": {**kept, **current}, "errors": errors}
        written = outbox.add(events, {POSITION: json.dumps(snapshot, separators=(",", ":"))})
        self._last_read, self._unreadable = _now(), errors
        return written


def _selected(values: list[Value], names: tuple[str, ...]) -> dict[str, Any]:
    wanted = {name.lower() for name in names}
    return {
        value.name: {"type": value.type, "data": value.data}
        for value in values
        if not wanted or value.name.lower() in wanted
    }


def _still_watched(key: str, configured: set[str]) -> bool:
    """Whether a snapshot key is still configured (a user hive's key by its HKCU form)."""
    if key in configured:
        return True
    hive, _, rest = key.partition("\\")
    if hive != "HKU":
        return False
    _sid, _, path = rest.partition("\\")
    return f"HKCU\\{path}" in configured


def _load(text: str | None) -> dict[str, Any]:
    try:
        loaded = json.loads(text) if text else {}
    except ValueError:
        loaded = {}
    if not isinstance(loaded, dict) or not isinstance(loaded.get("keys"), dict):
        return {"keys": {}, "errors": {}}
    return loaded


def _event(
    change: str, key: str, name: str, now: dict[str, Any], before: dict[str, Any] | None
) -> dict[str, Any]:
    shown = _value_name(name)
    kind, data = now["type"], now["data"]
    event: dict[str, Any] = {
        "module": MODULE,
        "title": TITLES[change],
        "registry_event": change,
        "registry_key": key,
        "registry_value": shown,
        "value_type": kind,
        "data": data,
        "TargetObject": f"{key}\\{shown}",
        "EventType": "DeleteValue" if change == "deleted" else "SetValue",
        "Details": details(kind, data),
    }
    if before is not None:
        event["type_before"], event["data_before"] = before["type"], before["data"]
    if key.startswith("HKU\\"):
        event["user_sid"] = key.split("\\")[1]
    line = f"{TITLES[change]}: {key}\\{shown} = {event['Details'][:512]}"
    if change == "modified" and before is not None:
        line += f" (was {details(before['type'], before['data'])[:512]})"
    event["full_log"] = line
    event["timestamp"] = _now()
    return event


def _changes(key: str, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    events = [_event("added", key, name, new[name], None) for name in new if name not in old]
    for name in new:
        if name in old and old[name] != new[name]:
            events.append(_event("modified", key, name, new[name], old[name]))
    return events + [_event("deleted", key, n, old[n], None) for n in old if n not in new]


def _baseline_event(keys: list[str], current: dict[str, dict[str, Any]]) -> dict[str, Any]:
    count = sum(len(current[key]) for key in keys)
    return {
        "module": MODULE,
        "title": "Registry baseline",
        "keys": keys,
        "values": count,
        "full_log": f"registry baseline recorded: {count} values in {len(keys)} keys",
        "timestamp": _now(),
    }


def _incomplete_event(errors: dict[str, str]) -> dict[str, Any]:
    reasons = "; ".join(f"{key}: {reason}" for key, reason in sorted(errors.items()))
    return {
        "module": MODULE,
        "title": "Registry incomplete",
        "errors": errors,
        "full_log": f"registry keys not read: {reasons}"[:8192],
        "timestamp": _now(),
    }
