"""Bar charts as plain SVG geometry, computed on the server (no scripts, no styles)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Bar:
    """One bar: its place, size and the numbers it stands for."""

    x: float
    y: float
    width: float
    height: float
    label: str
    count: int


@dataclass(frozen=True)
class BarChart:
    """A chart's bars and axis labels in a 0..width, 0..height box."""

    width: int
    height: int
    bars: list[Bar]
    peak: int
    first_label: str
    last_label: str
    total: int


def time_bars(
    buckets: list[tuple[datetime, int]], *, width: int = 960, height: int = 120
) -> BarChart:
    """Lay out counts over time as bars, tallest at full height."""
    peak = max((count for _, count in buckets), default=0)
    slot = width / max(len(buckets), 1)
    bars = []
    for index, (start, count) in enumerate(buckets):
        bar_height = 0.0 if peak == 0 else (height - 14) * count / peak
        bars.append(
            Bar(
                x=round(index * slot + 1, 2),
                y=round(height - 14 - bar_height, 2),
                width=round(max(slot - 2, 1), 2),
                height=round(bar_height, 2),
                label=start.strftime("%Y-%m-%d %H:%M"),
                count=count,
            )
        )
    return BarChart(
        width=width,
        height=height,
        bars=bars,
        peak=peak,
        first_label=bars[0].label if bars else "",
        last_label=bars[-1].label if bars else "",
        total=sum(count for _, count in buckets),
    )
