"""Prometheus counters of the MISP event fixer: runs, changes and lookups."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter


@dataclass
class FixerMetrics:
    """Counters registered in the application's registry, never a module global."""

    registry: CollectorRegistry

    def __post_init__(self) -> None:
        self.runs = Counter(
            "puffin_misp_fixer_runs_total",
            "MISP event fixer runs by status",
            ["status"],
            registry=self.registry,
        )
        self.changes = Counter(
            "puffin_misp_fixer_changes_total",
            "Changes the MISP event fixer applied, by kind",
            ["kind"],
            registry=self.registry,
        )
        self.lookups = Counter(
            "puffin_misp_fixer_lookups_total",
            "False-positive verdicts and remote lookups, by source",
            ["source"],
            registry=self.registry,
        )

    def observe(
        self, *, status: str, change_kinds: Iterable[str], sources: Iterable[str], remote: int
    ) -> None:
        """Count one run, its applied changes, its verdicts by source and its remote lookups."""
        self.runs.labels(status).inc()
        for kind, count in Tally(change_kinds).items():
            self.changes.labels(kind).inc(count)
        for source, count in Tally(sources).items():
            self.lookups.labels(source).inc(count)
        if remote:
            self.lookups.labels("opentip_request").inc(remote)
