"""A compiled rule as plain data: what running rules needs, without pySigma.

`compiler` turns a parsed Sigma rule into a `CompiledRule`; everything that only runs
rules (the rule set, `puffin hunt` with a warm cache, the live path) imports this module
instead, so that pySigma is loaded only when a rule is parsed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from puffin.detection.engine.options import Dedupe

ENGINE_VERSION = "6"  # 2: rules carry their `puffin:` dedupe option; 3: utf16le is known
# 4: short non-ASCII literals (emoji, arrows) are indexed; 5: so are regular expressions'
# plain characters; 6: the cache holds rules as rows (`to_row`)
LEVELS = ("informational", "low", "medium", "high", "critical")


class UnsupportedRule(ValueError):
    """The rule uses something the engine cannot evaluate; the message says what."""


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to run: metadata, the matcher's source and its index keys.

    Plain data only, so it can be cached (`to_row`) and rebuilt without pySigma.
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

    def to_row(self) -> tuple[Any, ...]:
        """Return the rule's fields in order: plain tuples, strings and numbers.

        The compile cache stores rows with `marshal`, which reads them back as they were
        (tuples stay tuples) many times faster than JSON can be turned back into a rule.
        """
        return tuple(getattr(self, name) for name in self.__dataclass_fields__)

    @classmethod
    def from_row(cls, row: Sequence[Any], path: str) -> CompiledRule:
        """Rebuild a rule from `to_row`, found at this path (the cache is keyed by content)."""
        values = list(row)
        values[ROW_PATH] = path
        return cls(*values)


ROW_PATH = list(CompiledRule.__dataclass_fields__).index("path")  # in `to_row`
