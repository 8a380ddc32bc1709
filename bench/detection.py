"""Detection benchmark: the SigmaHQ Windows rules over the OTRF datasets, on one core.

Loads every SigmaHQ rule whose product is Windows from `../shared/data/sigma` (through
the compile cache in a temporary folder unless `--cache` names one), then matches the
OTRF JSON-lines events (already decoded: flat fields) against them. Events are read in
chunks; only matching is timed. Prints events per second, matches, rules and the peak
RSS; the last line is one JSON object.

    python bench/detection.py [--events 200000] [--cache var/cache/rules.sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import RuleCache, load_rules

SHARED = Path(os.environ.get("PUFFIN_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
FOLDERS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir")
CHUNK = 20_000


def otrf_events(limit: int) -> Iterator[list[dict[str, Any]]]:
    """Yield chunks of decoded OTRF events, up to `limit` in all."""
    chunk: list[dict[str, Any]] = []
    seen = 0
    for archive_path in sorted((SHARED / "otrf").glob("*.zip")):
        with zipfile.ZipFile(archive_path) as archive:
            for name in archive.namelist():
                with archive.open(name) as handle:
                    for line in handle:
                        chunk.append(orjson.loads(line))
                        seen += 1
                        if len(chunk) == CHUNK or seen == limit:
                            yield chunk
                            chunk = []
                        if seen == limit:
                            return
    if chunk:
        yield chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="at most this many")
    parser.add_argument("--cache", type=Path, help="compile cache (default: a temporary one)")
    args = parser.parse_args()
    if not (SHARED / "sigma").is_dir():
        sys.exit(f"no SigmaHQ rules under {SHARED}; set PUFFIN_SHARED_DATA")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    with tempfile.TemporaryDirectory() as scratch:
        cache = RuleCache(args.cache or Path(scratch) / "rules.sqlite")
        started = time.perf_counter()
        loaded = load_rules([SHARED / "sigma" / f for f in FOLDERS], cache=cache)
        cache.close()
        load_seconds = time.perf_counter() - started
    rules = [rule for rule in loaded.rules if rule.product == "windows"]
    started = time.perf_counter()
    engine = RuleSet(rules)
    engine.compile_all()  # matchers are otherwise compiled on first use, inside the timing
    index_seconds = time.perf_counter() - started
    print(f"rules: {len(rules)} Windows rules", end=" ")
    print(f"(load {load_seconds:.1f} s, index {index_seconds:.2f} s)")

    events = matches = 0
    matching_seconds = 0.0
    for chunk in otrf_events(args.events):
        started = time.perf_counter()
        for event in chunk:
            matches += len(engine.evaluate(event))
        matching_seconds += time.perf_counter() - started
        events += len(chunk)
    rate = events / matching_seconds if matching_seconds else 0.0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events: {events} in {matching_seconds:.2f} s = {rate:,.0f} events/s on one core")
    print(f"matches: {matches}; rule errors: {sum(e.count for e in engine.errors.values())}")
    print(f"peak RSS: {rss_mb:.0f} MB (rules, index and one chunk of {CHUNK} events)")
    print(
        json.dumps(
            {"events_per_second": round(rate), "rules": len(rules), "rss_mb": round(rss_mb, 1)}
        )
    )


if __name__ == "__main__":
    main()
