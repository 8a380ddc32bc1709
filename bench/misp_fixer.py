"""MISP fixer benchmark: fix generated events of 4,000 and 40,000 attributes end to end.

A fake MISP runs in its own process on loopback (as MISP would); the fixer talks to it
through the real PyMISP, with every MISP warninglist loaded and a fake OpenTIP in this
process. Each size is first run on a copy of the event to warm the OpenTIP cache and
PyMISP's connection (again, until max_attributes leaves no value unasked), then timed on
a fresh copy (same values, new UUIDs) from the first request to the last edit. The cold
figure is the first run, OpenTIP lookups included. The last line is one JSON object.

    python bench/misp_fixer.py
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = (4000, 40_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--page-size", type=int, default=1000)
    options = parser.parse_args()
    if options.serve:
        _serve()
        return
    with tempfile.TemporaryDirectory(prefix="puffin-misp-bench-") as tmp:
        result = _measure(Path(tmp), options.page_size)
    print(json.dumps(result))


def _measure(tmp: Path, page_size: int) -> dict[str, Any]:
    from tests.fakes.opentip import fake_opentip

    from puffin.intel.misp_fixer.fixer import build_fixer
    from puffin.intel.misp_fixer.settings import FixerSettings

    misp = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert misp.stdout is not None
        served = json.loads(misp.stdout.readline())
        with fake_opentip() as opentip:
            settings = FixerSettings(
                misp_url=served["url"],
                misp_key=served["key"],
                opentip_api_key=opentip.api_key,
                opentip_url=opentip.base_url,
                opentip_cache_file=tmp / "opentip.db",
                page_size=page_size,
            )
            began = time.perf_counter()
            fixer = build_fixer(settings, data_dir=tmp)
            index_seconds = time.perf_counter() - began
            print(f"warninglist index: {index_seconds:.2f} s")
            result: dict[str, Any] = {"warninglists_seconds": round(index_seconds, 2)}
            for size in SIZES:
                result.update(_time_size(fixer, served["events"][str(size)], size))
            fixer.close()
    finally:
        misp.communicate(input="", timeout=60)
    return result


def _time_size(fixer: Any, event_ids: list[str], size: int) -> dict[str, Any]:
    warm_up, timed = event_ids
    first = fixer.run(event_id=warm_up)
    rounds = 1
    while fixer.run(event_id=warm_up).not_looked_up and rounds < 20:
        rounds += 1  # max_attributes caps lookups per run: run again until all are cached
    began = time.perf_counter()
    report = fixer.run(event_id=timed)
    seconds = time.perf_counter() - began
    print(
        f"{size:>6} attributes: {seconds:.2f} s warm ({first.duration_seconds:.2f} s cold), "
        f"{len(report.decisions)} false positives, {len(report.applied)} changes, "
        f"{report.misp_write_calls} MISP write calls, {first.lookups} OpenTIP lookups cold"
    )
    if report.partial or report.errors:
        print(f"  problems: {report.errors}")
    return {f"seconds_{size}": round(seconds, 2), f"cold_seconds_{size}": first.duration_seconds}


def _serve() -> None:
    """Child process: hold the events in a fake MISP until the parent closes stdin."""
    from tests.fakes.misp import FakeMisp, generate_event

    with FakeMisp() as fake:
        events: dict[str, list[str]] = {}
        for size in SIZES:
            document = generate_event(size, seed=size)
            events[str(size)] = [fake.add_event(_fresh_uuids(document)) for _ in range(2)]
        print(json.dumps({"url": fake.url, "key": fake.key, "events": events}), flush=True)
        sys.stdin.read()


def _fresh_uuids(document: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of an event whose event, objects and attributes have new UUIDs."""
    copy = json.loads(json.dumps(document))
    event = copy["Event"]
    event["uuid"] = str(uuid.uuid4())
    for holder in [event, *event.get("Object", [])]:
        for item in holder.get("Attribute", []):
            item["uuid"] = str(uuid.uuid4())
    for misp_object in event.get("Object", []):
        misp_object["uuid"] = str(uuid.uuid4())
    return copy


if __name__ == "__main__":
    main()
