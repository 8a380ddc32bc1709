"""Rules and correlations together: what the live path, `hunt` and `logtest` run.

The rule set matches single events; correlation rules then count and order those matches
per group within their timespan. Base rules that a correlation marks `generate: false`
feed the correlation without raising alerts of their own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from puffin.detection.engine.ruleset import RuleSet

if TYPE_CHECKING:  # imported when used: the correlation engine loads pySigma
    from puffin.detection.engine.correlation import CompiledCorrelation, CorrelationState

TIME_FIELDS = ("timestamp", "@timestamp", "TimeCreated", "UtcTime", "time", "received_at")


@dataclass(frozen=True)
class Hit:
    """One alert-worthy result: a rule or a correlation that matched."""

    rule_id: str
    title: str
    level: str
    tags: Sequence[str]
    matched: dict[str, Any]
    correlation: bool = False
    count: int = 1


def event_time(event: Mapping[str, Any], default: float) -> float:
    """Return the event's own time as epoch seconds, or `default`."""
    for name in TIME_FIELDS:
        value = event.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return default


@dataclass
class Detector:
    """Matches events against rules, then correlations; one per stream (organisation)."""

    rules: RuleSet
    correlations: Sequence[CompiledCorrelation] = ()
    max_groups: int = 100_000
    _state: CorrelationState | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.correlations:
            from puffin.detection.engine.correlation import CorrelationState

            self._state = CorrelationState(self.correlations, max_groups=self.max_groups)

    def evaluate(self, event: Mapping[str, Any], timestamp: float | None = None) -> list[Hit]:
        """Return the rules and correlations that fire on this event."""
        matches = self.rules.evaluate(event)
        state = self._state
        hits: list[Hit] = []
        names: set[str] = set()
        for match in matches:
            names.update(item for item in (match.rule.id, match.rule.name) if item)
            if state is not None and (
                match.rule.id in state.silenced or match.rule.name in state.silenced
            ):
                continue
            hits.append(Hit(match.rule_id, match.title, match.level, match.tags, match.matched))
        if state is not None and names & state.references:
            when = timestamp if timestamp is not None else event_time(event, time.time())
            for found in state.observe(names, event, when):
                hits.append(
                    Hit(
                        found.rule_id,
                        found.title,
                        found.level,
                        found.tags,
                        {**found.group, "count": found.count},
                        correlation=True,
                        count=found.count,
                    )
                )
        return hits
