"""A compiled rule as plain data: what running rules needs, without pySigma.

`compiler` turns a parsed Sigma rule into a `CompiledRule`; everything that only runs
rules (the rule set, `puffin hunt` with a warm cache, the live path) imports this module
instead, so that pySigma is loaded only when a rule is parsed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from puffin.detection.engine.options import Dedupe

ENGINE_VERSION = "5"  # 2: rules carry their `puffin:` dedupe option; 3: utf16le is known
# 4: short non-ASCII literals (emoji, arrows) are indexed; 5: so are regular expressions'
# plain characters
LEVELS = ("informational", "low", "medium", "high", "critical")
_TUPLES = ("tags", "fields", "warnings", "falsepositives", "dedupe_fields")


def _pair(item: Sequence[Any]) -> tuple[Any, Any]:
    name, literal = item
    return name, literal


class UnsupportedRule(ValueError):
    """The rule uses something the engine cannot evaluate; the message says what."""


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to run: metadata, the matcher's source and its index keys.

    Plain data only, so it can be cached as JSON and rebuilt without pySigma.
    """

    id: str
    title: str
    level: str
    status: str
    tags: tuple[str, ...]
    name: str
    product: str
    category: str
    service: str
    source: str
    fields: tuple[str, ...]
    literals: tuple[tuple[str | None, str], ...] | None
    event_ids: tuple[str, ...] | None
    warnings: tuple[str, ...] = ()
    description: str = ""
    falsepositives: tuple[str, ...] = ()
    path: str = ""
    line: int = 0
    dedupe_fields: tuple[str, ...] = ()
    dedupe_window: int | None = None  # None: the rule has no `puffin: dedupe` of its own

    @property
    def dedupe(self) -> Dedupe | None:
        """Return the rule's own dedupe option, or None to use the server's default."""
        if self.dedupe_window is None:
            return None
        return Dedupe(self.dedupe_fields, self.dedupe_window)

    def to_json(self) -> dict[str, Any]:
        """Return the rule as JSON-ready data."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CompiledRule:
        """Rebuild a rule from `to_json` data."""
        values = dict(data)
        for name in _TUPLES:
            found = values.get(name)
            values[name] = tuple(found) if found else ()
        literals = values.get("literals")
        if literals is not None:
            values["literals"] = tuple(map(_pair, literals))
        if values.get("event_ids") is not None:
            values["event_ids"] = tuple(values["event_ids"])
        return cls(**values)
