"""A fake of the standard library's `winreg` module over an in-memory registry.

It answers the calls `puffin.agent.windows.registry.WinregRegistry` makes the way
`winreg` does on Windows: key paths are case-insensitive; `OpenKeyEx` raises
FileNotFoundError for a missing key and PermissionError for a refused one; `QueryInfoKey`
gives (subkeys, values, last write); `EnumValue` and `EnumKey` raise OSError past the end
("No more data is available"); REG_DWORD comes back as an int, REG_MULTI_SZ as a list,
REG_BINARY as bytes. Every `OpenKeyEx` is recorded with its access mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HKEY_CURRENT_USER = 0x80000001
HKEY_LOCAL_MACHINE = 0x80000002
HKEY_USERS = 0x80000003
KEY_READ = 0x20019
KEY_WOW64_64KEY = 0x0100
KEY_WOW64_32KEY = 0x0200
REG_NONE, REG_SZ, REG_EXPAND_SZ, REG_BINARY, REG_DWORD = 0, 1, 2, 3, 4
REG_MULTI_SZ, REG_QWORD = 7, 11
ERROR_NO_MORE_ITEMS = 259
HIVE_NAMES = {"HKLM": HKEY_LOCAL_MACHINE, "HKU": HKEY_USERS, "HKCU": HKEY_CURRENT_USER}


@dataclass
class Node:
    name: str
    values: dict[str, tuple[str, Any, int]] = field(default_factory=dict)  # lower -> value
    children: dict[str, Node] = field(default_factory=dict)
    denied: bool = False


class HKEY:
    """An open key; a context manager like winreg's PyHKEY."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.closed = False

    def Close(self) -> None:
        self.closed = True

    def __enter__(self) -> HKEY:
        return self

    def __exit__(self, *_: object) -> None:
        self.Close()


class FakeWinreg:
    """Use as the `module` of WinregRegistry; build the registry with `set` and `delete`."""

    HKEY_CURRENT_USER = HKEY_CURRENT_USER
    HKEY_LOCAL_MACHINE = HKEY_LOCAL_MACHINE
    HKEY_USERS = HKEY_USERS
    KEY_READ = KEY_READ
    KEY_WOW64_64KEY = KEY_WOW64_64KEY

    def __init__(self) -> None:
        self.roots = {hive: Node(name) for name, hive in HIVE_NAMES.items()}
        self.opened: list[tuple[int, str, int]] = []
        self.handles: list[HKEY] = []

    # building ------------------------------------------------------------------------

    def _node(self, key: str, *, create: bool) -> Node | None:
        hive, _, path = key.partition("\\")
        node = self.roots[HIVE_NAMES[hive]]
        for part in [p for p in path.split("\\") if p]:
            child = node.children.get(part.lower())
            if child is None:
                if not create:
                    return None
                child = node.children[part.lower()] = Node(part)
            node = child
        return node

    def create_key(self, key: str) -> Node:
        node = self._node(key, create=True)
        assert node is not None
        return node

    def set(self, key: str, name: str, data: Any, kind: int = REG_SZ) -> None:
        self.create_key(key).values[name.lower()] = (name, data, kind)

    def delete(self, key: str, name: str) -> None:
        node = self._node(key, create=False)
        assert node is not None
        del node.values[name.lower()]

    def delete_key(self, key: str) -> None:
        parent, _, leaf = key.rpartition("\\")
        node = self._node(parent, create=False)
        assert node is not None
        del node.children[leaf.lower()]

    def deny(self, key: str) -> None:
        self.create_key(key).denied = True

    # the winreg calls ----------------------------------------------------------------

    def OpenKeyEx(self, key: int, sub_key: str, reserved: int = 0, access: int = KEY_READ) -> HKEY:
        self.opened.append((key, sub_key, access))
        node = self.roots[key]
        for part in [p for p in sub_key.split("\\") if p]:
            child = node.children.get(part.lower())
            if child is None:
                raise FileNotFoundError(2, "The system cannot find the file specified")
            node = child
        if node.denied:
            raise PermissionError(5, "Access is denied")
        handle = HKEY(node)
        self.handles.append(handle)
        return handle

    def QueryInfoKey(self, key: HKEY) -> tuple[int, int, int]:
        assert not key.closed
        return len(key.node.children), len(key.node.values), 133_000_000_000_000_000

    def EnumValue(self, key: HKEY, index: int) -> tuple[str, Any, int]:
        assert not key.closed
        values = list(key.node.values.values())
        if index >= len(values):
            raise OSError(ERROR_NO_MORE_ITEMS, "No more data is available")
        return values[index]

    def EnumKey(self, key: HKEY, index: int) -> str:
        assert not key.closed
        names = [child.name for child in key.node.children.values()]
        if index >= len(names):
            raise OSError(ERROR_NO_MORE_ITEMS, "No more data is available")
        return names[index]
