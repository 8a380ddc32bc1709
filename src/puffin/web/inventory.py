"""Turn an agent's free-form inventory into readable tables, whatever keys it has."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_ROWS = 50
MAX_COLUMNS = 8
MAX_TEXT = 300


@dataclass
class InventorySection:
    """One inventory entry: a value, a list of name/value pairs, or a table of records."""

    name: str
    text: str = ""
    pairs: list[tuple[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    total: int = 0

    @property
    def shown(self) -> int:
        """Return how many records the table shows."""
        return len(self.rows)


def as_text(value: Any) -> str:
    """Return a short readable text for any JSON value."""
    if value is None:
        return "—"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float):
        text = str(value).lower() if isinstance(value, bool) else str(value)
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _columns(records: list[dict[str, Any]]) -> list[str]:
    names: dict[str, None] = {}
    for record in records:
        for key in record:
            names.setdefault(str(key), None)
    return list(names)[:MAX_COLUMNS]


def _table(name: str, items: list[Any]) -> InventorySection:
    shown = items[:MAX_ROWS]
    section = InventorySection(name=name, total=len(items))
    if shown and all(isinstance(item, dict) for item in shown):
        section.columns = _columns(shown)
        section.rows = [[as_text(item.get(c)) for c in section.columns] for item in shown]
    else:
        section.columns = ["value"]
        section.rows = [[as_text(item)] for item in shown]
    return section


def _mapping(name: str, value: dict[str, Any]) -> InventorySection:
    records = list(value.values())
    if records and all(isinstance(record, dict) for record in records):
        # A mapping of records (path -> state, name -> facts) reads best as a table.
        rows = [{"name": key, **record} for key, record in value.items()]
        return _table(name, rows)
    pairs = [(str(key), as_text(item)) for key, item in list(value.items())[:MAX_ROWS]]
    return InventorySection(name=name, pairs=pairs, total=len(value))


def describe(name: str, value: Any) -> InventorySection:
    """Describe one inventory entry for display."""
    if isinstance(value, dict):
        return _mapping(name, value)
    if isinstance(value, list):
        return _table(name, value)
    return InventorySection(name=name, text=as_text(value), total=1)


def sections(inventory: dict[str, Any]) -> tuple[list[InventorySection], InventorySection | None]:
    """Return the inventory's sections and, apart, its file-integrity state if present."""
    fim = describe("fim", inventory["fim"]) if "fim" in inventory else None
    others = [describe(str(key), value) for key, value in inventory.items() if key != "fim"]
    return others, fim
