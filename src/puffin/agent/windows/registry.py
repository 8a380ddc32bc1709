"""Reading the Windows registry behind a small interface, with `winreg` as the one backend.

`Registry` lists a key's values and subkeys by hive (`HKLM`, `HKU`) and path, and raises
`KeyMissing` or `KeyDenied` when the key is absent or refused. `WinregRegistry` does it
with the standard library's `winreg` (always the 64-bit view, so a 32-bit Python sees what
Windows runs; the WOW6432Node paths are read by their own name). It takes the module as a
parameter, so tests drive it with a fake `winreg` and Linux never imports the real one.

Values come back as plain JSON data: strings for REG_SZ and REG_EXPAND_SZ (unexpanded),
lists for REG_MULTI_SZ, integers for REG_DWORD and REG_QWORD, lower-case hex for binary
and every other type, and `None` for an empty REG_NONE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

HIVES = {
    "HKLM": "HKEY_LOCAL_MACHINE",
    "HKEY_LOCAL_MACHINE": "HKEY_LOCAL_MACHINE",
    "HKU": "HKEY_USERS",
    "HKEY_USERS": "HKEY_USERS",
}
TYPE_NAMES = {
    0: "REG_NONE",
    1: "REG_SZ",
    2: "REG_EXPAND_SZ",
    3: "REG_BINARY",
    4: "REG_DWORD",
    5: "REG_DWORD_BIG_ENDIAN",
    6: "REG_LINK",
    7: "REG_MULTI_SZ",
    8: "REG_RESOURCE_LIST",
    9: "REG_FULL_RESOURCE_DESCRIPTOR",
    10: "REG_RESOURCE_REQUIREMENTS_LIST",
    11: "REG_QWORD",
}
MAX_VALUES = 10_000
MAX_TEXT = 32 * 1024
SID = re.compile(r"^S-1-\d+(-\d+)+$", re.IGNORECASE)


class RegistryError(OSError):
    """A key could not be read; the message says which and why."""


class KeyMissing(RegistryError):
    """The key does not exist."""


class KeyDenied(RegistryError):
    """The agent may not read the key."""


@dataclass(frozen=True)
class Value:
    """One registry value: its name ("" for the default value), type name and data."""

    name: str
    type: str
    data: Any


class Registry(Protocol):
    """What the collectors need of the registry."""

    def values(self, hive: str, path: str) -> list[Value]:
        """Return the values of a key."""
        ...

    def subkeys(self, hive: str, path: str) -> list[str]:
        """Return the names of a key's subkeys."""
        ...


def user_hives(registry: Registry) -> list[str]:
    """Return the SIDs of the user hives loaded under HKEY_USERS (not `_Classes` or `.DEFAULT`)."""
    names = registry.subkeys("HKU", "")
    return sorted((name for name in names if SID.match(name)), key=str.upper)


def plain(data: Any, kind: int) -> Any:
    """Return a value's data as JSON data (see the module)."""
    if isinstance(data, str):
        return data[:MAX_TEXT]
    if isinstance(data, list):
        return [str(item)[:MAX_TEXT] for item in data[:MAX_VALUES]]
    if isinstance(data, bool):
        return int(data)
    if isinstance(data, int):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)[: MAX_TEXT // 2].hex()
    if data is None:
        return None
    return str(data)[:MAX_TEXT]


class WinregRegistry:
    """The registry of this machine through `winreg` (or a module that behaves like it)."""

    def __init__(self, module: Any = None) -> None:
        if module is None:
            try:
                import winreg as module
            except ImportError as error:
                raise OSError("the Windows registry exists only on Windows") from error
        self._winreg = module

    def _open(self, hive: str, path: str) -> Any:
        api = self._winreg
        try:
            root = getattr(api, HIVES[hive.upper()])
        except KeyError as error:
            raise RegistryError(f"{hive}: not a hive this agent reads (HKLM, HKU)") from error
        where = f"{hive}\\{path}"
        try:
            return api.OpenKeyEx(root, path, 0, api.KEY_READ | api.KEY_WOW64_64KEY)
        except FileNotFoundError as error:
            raise KeyMissing(f"{where}: no such key") from error
        except PermissionError as error:
            raise KeyDenied(f"{where}: access denied") from error
        except OSError as error:
            raise RegistryError(f"{where}: {error}") from error

    def values(self, hive: str, path: str) -> list[Value]:
        """Return the values of a key, in the order the registry gives them."""
        api = self._winreg
        key = self._open(hive, path)
        try:
            count = min(api.QueryInfoKey(key)[1], MAX_VALUES)
            found = []
            for index in range(count):
                try:
                    name, data, kind = api.EnumValue(key, index)
                except OSError:  # a value removed while listing: the list just ends sooner
                    break
                found.append(
                    Value(str(name), TYPE_NAMES.get(kind, f"REG_{kind}"), plain(data, kind))
                )
            return found
        finally:
            key.Close()

    def subkeys(self, hive: str, path: str) -> list[str]:
        """Return the names of a key's subkeys."""
        api = self._winreg
        key = self._open(hive, path)
        try:
            count = min(api.QueryInfoKey(key)[0], MAX_VALUES)
            names = []
            for index in range(count):
                try:
                    names.append(str(api.EnumKey(key, index)))
                except OSError:
                    break
            return names
        finally:
            key.Close()
