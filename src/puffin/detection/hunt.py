"""Offline hunting: run rules over EVTX, JSON and syslog files, like Chainsaw or Hayabusa.

Each input is a file or a folder searched recursively. `.evtx` files are read with the
`evtx` package and normalised like live Windows events; `.json`, `.jsonl` and `.ndjson`
hold one event per line (or one JSON array or document); `.zip` archives are opened and
their members read by the same rules; anything else is read as text log lines and
decoded. Files are shared among worker processes; each match names its file and record
(the EVTX EventRecordID, or the 1-based line number).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import struct
import sys
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from puffin.detection.detector import Detector, event_time
from puffin.detection.engine.compiler import CompiledRule
from puffin.detection.engine.correlation import CompiledCorrelation
from puffin.detection.engine.ruleset import RuleErrors, RuleSet
from puffin.ingest.windows import flatten_evtx_record

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
SKIPPED_SUFFIXES = (".yml", ".yaml", ".exe", ".dll", ".png", ".jpg", ".gif", ".pdf")
# Fewer records than this (estimated) are hunted in one process: starting workers, each
# compiling the matchers it needs, costs about as much as matching that many.
PARALLEL_MIN_RECORDS = 20_000
EVTX_HEADER, EVTX_CHUNK = 4096, 65536


@dataclass(frozen=True)
class Source:
    """One file to hunt in (a zip archive counts as one)."""

    path: Path
    size: int


@dataclass(frozen=True)
class HuntMatch:
    """One rule that matched one record."""

    rule_id: str
    rule_title: str
    level: str
    file: str
    record_id: int | str
    timestamp: str
    tags: tuple[str, ...]
    matched: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Return the match as one JSON-lines object."""
        return {
            "rule_id": self.rule_id,
            "rule_title": self.rule_title,
            "level": self.level,
            "file": self.file,
            "record_id": self.record_id,
            "timestamp": self.timestamp,
            "tags": list(self.tags),
            "matched": self.matched,
        }


def find_sources(paths: Sequence[str | Path]) -> list[Source]:
    """Return the files under the paths, largest first (to balance the workers)."""
    found: list[Source] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file()]
        elif path.is_file():
            files = [path]
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
        for file in files:
            if file.suffix.lower() not in SKIPPED_SUFFIXES or path == file:
                found.append(Source(file, file.stat().st_size))
    return sorted(found, key=lambda source: -source.size)


def read_records(path: Path) -> Iterator[tuple[str, int | str, dict[str, Any]]]:
    """Yield (file, record id, event) for every record of a file or archive."""
    suffix = path.suffix.lower()
    if suffix == ".evtx":
        yield from _evtx(str(path), path)
    elif suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.endswith("/"):
                    continue
                label = f"{path}!{name}"
                data = archive.read(name)
                if name.lower().endswith(".evtx"):
                    yield from _evtx(label, io.BytesIO(data))
                else:
                    yield from _lines(label, io.BytesIO(data), name.lower().endswith(JSON_SUFFIXES))
    else:
        with path.open("rb") as handle:
            yield from _lines(str(path), handle, suffix in JSON_SUFFIXES)


def _evtx(label: str, source: Any) -> Iterator[tuple[str, int | str, dict[str, Any]]]:
    import evtx

    parser = evtx.PyEvtxParser(source)
    for record in parser.records_json():
        item: dict[str, Any] = dict(record or {})
        try:
            event = flatten_evtx_record(orjson.loads(item["data"]))
        except (ValueError, TypeError, KeyError):
            continue
        # The EventRecordID of the event itself: extracted logs renumber record headers.
        record_id = event.get("EventRecordID") or item.get("event_record_id", 0)
        yield label, int(record_id) if str(record_id).isdigit() else record_id, event


def _lines(
    label: str, handle: IO[bytes], json_file: bool
) -> Iterator[tuple[str, int | str, dict[str, Any]]]:
    from puffin.ingest.decoders import Decoders

    decoders = Decoders()
    first = handle.read(64).lstrip()[:1]
    handle.seek(0)
    if json_file and first == b"[":
        for number, item in enumerate(json.load(handle), start=1):
            if isinstance(item, dict):
                yield label, number, _json_event(item)
        return
    for number, raw in enumerate(handle, start=1):
        if raw[:1] == b"{" or raw.lstrip()[:1] == b"{":
            try:
                item = orjson.loads(raw)  # straight from bytes: no decoding to str first
            except orjson.JSONDecodeError:
                item = _loads_lenient(raw)
            if isinstance(item, dict):
                yield label, number, _json_event(item)
                continue
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if not line.strip():
            continue
        yield label, number, decoders.decode(line)


def _loads_lenient(raw: bytes) -> Any:
    """Parse a JSON line whose bytes are not all valid UTF-8 (they become U+FFFD)."""
    try:
        return orjson.loads(raw.decode("utf-8", errors="replace"))
    except orjson.JSONDecodeError:
        return None


def _json_event(item: dict[str, Any]) -> dict[str, Any]:
    event = item.get("Event")
    if isinstance(event, dict) and isinstance(event.get("System"), dict):
        return flatten_evtx_record(item)
    return item


def _timestamp(event: dict[str, Any]) -> str:
    for name in ("TimeCreated", "timestamp", "@timestamp", "UtcTime", "time"):
        value = event.get(name)
        if value:
            return str(value)
    return ""


def hunt_file(detector: Detector, path: Path) -> tuple[list[HuntMatch], int]:
    """Run the detector over one file; return its matches and how many records it read."""
    matches: list[HuntMatch] = []
    records = 0
    timed = bool(detector.correlations)  # only correlations need each event's own time
    for label, record_id, event in read_records(path):
        records += 1
        hits = detector.evaluate(event, event_time(event, float(records)) if timed else None)
        for hit in hits:
            matches.append(
                HuntMatch(
                    hit.rule_id,
                    hit.title,
                    hit.level,
                    label,
                    record_id,
                    _timestamp(event),
                    tuple(hit.tags),
                    _plain(hit.matched),
                )
            )
    return matches, records


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in values.items()}


# --- parallel runs -------------------------------------------------------------------

_WORKER: Detector | None = None
_FORKED_RULES: Sequence[CompiledRule] = ()


def _start_worker(rules_json: str | None) -> None:
    global _WORKER
    if rules_json is None:  # a forked worker: the parent's rules are already here
        rules: Sequence[CompiledRule] = _FORKED_RULES
    else:
        rules = [CompiledRule.from_json(item) for item in json.loads(rules_json)]
    _WORKER = Detector(RuleSet(rules))


def _work(path: str) -> tuple[list[dict[str, Any]], int, dict[str, tuple[int, str]]]:
    assert _WORKER is not None
    before = {rule_id: e.count for rule_id, e in _WORKER.rules.errors.items()}
    matches, records = hunt_file(_WORKER, Path(path))
    raised = {
        rule_id: (e.count - before.get(rule_id, 0), e.last)
        for rule_id, e in _WORKER.rules.errors.items()
        if e.count > before.get(rule_id, 0)
    }
    return [m.to_json() for m in matches], records, raised


@dataclass
class HuntResult:
    """Everything a hunt found."""

    matches: list[HuntMatch]
    records: int
    files: int
    errors: list[str]
    rule_errors: dict[str, RuleErrors] = field(default_factory=dict)

    def count_rule_errors(self, rule_id: str, count: int, last: str) -> None:
        """Add errors a rule raised (the engine counted them and went on)."""
        entry = self.rule_errors.setdefault(rule_id, RuleErrors())
        entry.count += count
        entry.last = last or entry.last


def run_hunt(
    sources: Sequence[Source],
    rules: Sequence[CompiledRule],
    correlations: Sequence[CompiledCorrelation] = (),
    *,
    jobs: int | None = None,
    on_file_done: Callable[[Source], None] | None = None,
) -> HuntResult:
    """Hunt through every source; in parallel unless there are correlations to keep.

    Without `jobs`, small inputs (under PARALLEL_MIN_RECORDS, estimated) are read in this
    process: starting workers would cost more than it saves.
    """
    if jobs is None:
        jobs = 1 if not _enough_records(sources, PARALLEL_MIN_RECORDS) else os.cpu_count() or 1
    result = HuntResult([], 0, len(sources), [])
    if jobs == 1 or len(sources) == 1 or correlations:
        detector = Detector(RuleSet(rules), correlations)
        for source in sources:
            _one(result, source, lambda s: hunt_file(detector, s.path), on_file_done)
        for rule_id, errors in detector.rules.errors.items():
            result.count_rule_errors(rule_id, errors.count, errors.last)
        return result
    global _FORKED_RULES
    # Forked workers inherit the rules; elsewhere (spawn) they get them as JSON.
    forking = "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux"
    context = multiprocessing.get_context("fork" if forking else None)
    payload = None if forking else json.dumps([rule.to_json() for rule in rules])
    _FORKED_RULES = rules
    try:
        with ProcessPoolExecutor(
            max_workers=min(jobs, len(sources)),
            mp_context=context,
            initializer=_start_worker,
            initargs=(payload,),
        ) as pool:
            futures = {pool.submit(_work, str(source.path)): source for source in sources}
            for future in as_completed(futures):
                _one(result, futures[future], partial(_finished, future, result), on_file_done)
    finally:
        _FORKED_RULES = ()
    return result


def _enough_records(sources: Iterable[Source], wanted: int) -> bool:
    """Whether the sources hold at least `wanted` records, by a cheap estimate."""
    total = 0
    for source in sources:
        total += estimated_records(source)
        if total >= wanted:
            return True
    return False


def estimated_records(source: Source) -> int:
    """Roughly how many records a file holds, without reading it all.

    EVTX: the record counts in its chunk headers (EVTX files are mostly preallocated
    chunks, so their size says little). Other files: from their size.
    """
    suffix = source.path.suffix.lower()
    if suffix == ".evtx":
        try:
            return _evtx_records(source.path)
        except OSError:
            return 0
    if suffix == ".zip":
        return source.size // 100  # compressed text
    return source.size // (1000 if suffix in JSON_SUFFIXES else 200)


def _evtx_records(path: Path) -> int:
    total = 0
    with path.open("rb") as handle:
        offset = EVTX_HEADER
        while True:
            handle.seek(offset)
            head = handle.read(24)
            if len(head) < 24 or head[:8] != b"ElfChnk\x00":
                return total
            first, last = struct.unpack_from("<QQ", head, 8)  # first and last record numbers
            total += last - first + 1 if last >= first else 0
            offset += EVTX_CHUNK


def _finished(
    future: Future[Any], result: HuntResult, _source: Source
) -> tuple[list[HuntMatch], int]:
    items, records, raised = future.result()
    for rule_id, (count, last) in raised.items():
        result.count_rule_errors(rule_id, count, last)
    matches = [HuntMatch(**{**item, "tags": tuple(item["tags"])}) for item in items]
    return matches, records


def _one(
    result: HuntResult,
    source: Source,
    run: Callable[[Source], tuple[list[HuntMatch], int]],
    on_file_done: Callable[[Source], None] | None,
) -> None:
    try:
        matches, records = run(source)
    except Exception as error:  # a broken file is reported; the hunt goes on
        result.errors.append(f"{source.path}: {type(error).__name__}: {error}")
    else:
        result.matches.extend(matches)
        result.records += records
    if on_file_done:
        on_file_done(source)


def summary(matches: Iterable[HuntMatch]) -> list[tuple[str, str, str, int]]:
    """Return (level, rule title, rule id, count) rows, most severe and frequent first."""
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}
    counts: dict[tuple[str, str, str], int] = {}
    for match in matches:
        key = (match.level, match.rule_title, match.rule_id)
        counts[key] = counts.get(key, 0) + 1
    rows = [(level, title, rule_id, n) for (level, title, rule_id), n in counts.items()]
    return sorted(rows, key=lambda row: (order.get(row[0], 5), -row[3], row[1]))
