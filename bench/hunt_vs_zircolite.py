"""Whole-process timing of `puffin hunt`, optionally beside an external Zircolite.

Runs `puffin hunt -r RULES FILE...` over every file with the given suffix under
`--events` (default: the SigmaHQ regression `.evtx` files in `../shared/data`), each run
a fresh process timed from start to exit, with its peak RSS (from `wait4`: the largest
single process, so Puffin's worker processes are not summed):

- cold: with an empty compile cache (a new `PUFFIN_CACHE_DIR`), so every rule is parsed;
- warm: again with the cache the cold runs filled.

With `--zircolite CMD` it also runs that command (split like a shell would, but run
without one), adding `-e EVENTS -r ZIRCOLITE_RULES -o OUT -l LOG` and any
`--zircolite-args`, in a scratch folder. This script contains no Zircolite code: point
it at your own copy and a ruleset converted from the same Sigma rules. Each figure is the
median of `--runs` runs; the load average before and after is printed (other work on
the machine slows every figure); the last line is one JSON object.

    python bench/hunt_vs_zircolite.py [--runs 3] [--events DIR --suffix .evtx]
        [--rules DIR] [--zircolite "venv/bin/python zircolite.py"
        --zircolite-rules rules.json --zircolite-args "--noexternal -c config/x.json"]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(os.environ.get("PUFFIN_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
RECORDS = re.compile(r"(\d+) matches in ([\d,]+) records from (\d+) files")


@dataclass(frozen=True)
class Run:
    """One timed process."""

    seconds: float
    cpu_seconds: float  # user + system, with the worker processes it waited for
    rss_mb: float
    output: str


def timed(command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> Run:
    """Run a command to completion; return its wall time, peak RSS and output."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(  # a command line the user gave; no shell
            command, stdout=output, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    if process.returncode != 0:
        sys.exit(f"{command[0]} exited with {process.returncode}:\n{text[-2000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text)


def puffin_command() -> list[str]:
    """The `puffin` console script beside this Python, else `python -m puffin.cli.main`."""
    script = Path(sys.executable).with_name("puffin")
    return [str(script)] if script.exists() else [sys.executable, "-m", "puffin.cli.main"]


def median(runs: list[Run]) -> Run:
    """The run with the median time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.seconds)
    return ordered[(len(ordered) - 1) // 2]


def describe(label: str, runs: list[Run]) -> None:
    times = ", ".join(f"{run.seconds:.2f}" for run in runs)
    best = median(runs)
    print(
        f"{label}: median {best.seconds:.2f} s (runs: {times}), CPU {best.cpu_seconds:.2f} s,"
        f" peak RSS {best.rss_mb:.0f} MB"
    )


def zircolite_matches(out: Path) -> int | None:
    """How many detections Zircolite wrote (the sum of each rule's `count`)."""
    try:
        results = json.loads(out.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return sum(int(item.get("count", 0)) for item in results if isinstance(item, dict))


def _load(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{value:.2f}" for value in averages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_events = SHARED / "sigma" / "regression_data" / "rules"
    parser.add_argument("--events", type=Path, default=default_events, help="folder of logs")
    parser.add_argument("--suffix", default=".evtx", help="files hunted under --events")
    parser.add_argument("--rules", type=Path, default=SHARED / "sigma" / "rules" / "windows")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--zircolite", help="command that starts Zircolite (no shell)")
    parser.add_argument("--zircolite-rules", type=Path, help="its JSON ruleset")
    parser.add_argument("--zircolite-args", default="", help="more Zircolite arguments")
    args = parser.parse_args()
    if args.zircolite and not args.zircolite_rules:
        parser.error("--zircolite needs --zircolite-rules")
    files = sorted(str(p) for p in args.events.rglob(f"*{args.suffix}") if p.is_file())
    if not files:
        sys.exit(f"no {args.suffix} files under {args.events}")
    size_mb = sum(os.path.getsize(f) for f in files) / 1e6
    print(f"input: {len(files)} {args.suffix} files ({size_mb:.1f} MB) under {args.events}")
    print(f"Puffin rules: {args.rules}")
    load_before = os.getloadavg()

    hunt = [*puffin_command(), "hunt", "-r", str(args.rules), *files]
    cold: list[Run] = []
    warm: list[Run] = []
    zircolite: list[Run] = []
    zircolite_found = None
    # One round: Puffin with an empty cache, Puffin again with that cache, then Zircolite;
    # interleaved so that a machine busy with other work slows each tool alike.
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as scratch:
            env = {**os.environ, "PUFFIN_CACHE_DIR": str(Path(scratch) / "cache")}
            cold.append(timed(hunt, env=env))
            warm.append(timed(hunt, env=env))
        if args.zircolite:
            with tempfile.TemporaryDirectory() as scratch:
                out = Path(scratch) / "detected_events.json"
                command = [
                    *shlex.split(args.zircolite),
                    "-e",
                    str(args.events),
                    "-r",
                    str(args.zircolite_rules),
                    "-o",
                    str(out),
                    "-l",
                    str(Path(scratch) / "zircolite.log"),
                    *shlex.split(args.zircolite_args),
                ]
                zircolite.append(timed(command, cwd=Path(scratch)))
                zircolite_found = zircolite_matches(out)
    found = RECORDS.search(warm[-1].output)
    if not found:
        sys.exit(f"could not read the record count from puffin's output:\n{warm[-1].output}")
    puffin_matches, records = int(found.group(1)), int(found.group(2).replace(",", ""))
    rules_line = next((line for line in warm[-1].output.splitlines() if " rules, " in line), "")
    print(f"Puffin: {rules_line.strip()}; {records:,} records, {puffin_matches} matches")
    describe("puffin hunt, empty compile cache", cold)
    describe("puffin hunt, warm compile cache", warm)
    cold_s, warm_s = median(cold).seconds, median(warm).seconds
    zircolite_s = None
    if zircolite:
        print(f"Zircolite: {args.zircolite} (rules {args.zircolite_rules})")
        print(f"Zircolite: {zircolite_found} matches")
        describe("zircolite", zircolite)
        zircolite_s = median(zircolite).seconds
        print(f"speedup: {zircolite_s / warm_s:.1f}x warm, {zircolite_s / cold_s:.1f}x cold")
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}")
    print(
        json.dumps(
            {
                "load_average_before": round(load_before[0], 2),
                "load_average_after": round(load_after[0], 2),
                "puffin_seconds_cold": round(cold_s, 2),
                "puffin_seconds_warm": round(warm_s, 2),
                "zircolite_seconds": None if zircolite_s is None else round(zircolite_s, 2),
                "records": records,
                "speedup_warm": None if zircolite_s is None else round(zircolite_s / warm_s, 1),
                "speedup_cold": None if zircolite_s is None else round(zircolite_s / cold_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
