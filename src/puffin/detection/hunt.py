"""Offline hunting: run rules over EVTX, JSON and syslog files, like Chainsaw or Hayabusa.

Each input is a file or a folder searched recursively. `.evtx` files are read with the
`evtx` package and normalised like live Windows events; `.json`, `.jsonl` and `.ndjson`
hold one event per line (or one JSON array or document); `.zip` archives are opened and
their members read by the same rules; anything else is read as text log lines and
decoded. Large inputs are shared, in batches of files, between this process and worker
processes; each match names its file and record (the EVTX EventRecordID, or the 1-based
line number).
"""

from __future__ import annotations

import gc
import heapq
import io
import json
import marshal
import os
import stat
import struct
import sys
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from puffin.detection.detector import Detector, Hit, event_time
from puffin.detection.engine.compiled import ROW_PATH, CompiledRule
from puffin.detection.engine.ruleset import Match, RuleErrors, RuleSet
from puffin.ingest.windows import flatten_evtx_record

if TYPE_CHECKING:  # the correlation engine loads pySigma; a hunt without any never needs it
    from concurrent.futures import Future

    from puffin.detection.engine.correlation import CompiledCorrelation

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
SKIPPED_SUFFIXES = (".yml", ".yaml", ".exe", ".dll", ".png", ".jpg", ".gif", ".pdf")
# Fewer records than this (estimated) are hunted in one process: a worker, which builds
# its own index plans and loads its own matchers, costs about as much as matching that
# many (measured on 2 cores: 2,220 EVTX records in 1,920 files took as long either way).
PARALLEL_MIN_RECORDS = 3_000
ESTIMATE_SAMPLE = 256  # files whose records are estimated one by one (see _enough_records)
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
        try:
            info = os.stat(entry)
        except (OSError, ValueError):
            info = None
        path = Path(entry)
        if info is not None and stat.S_ISREG(info.st_mode):  # named: hunted whatever its suffix
            found.append(Source(path, info.st_size))
        elif info is not None and stat.S_ISDIR(info.st_mode):
            found.extend(_files_under(path))
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return sorted(found, key=lambda source: -source.size)


def _files_under(folder: Path) -> Iterator[Source]:
    """Yield the files below a folder, like `rglob("*")` (links to folders not followed).

    `os.scandir` entries, not `Path` objects, for the walk: for an incident's thousands
    of small extracted logs, Path.rglob with is_file and stat took half as long again.
    """
    pending = [str(folder)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:  # an unreadable folder is skipped, as rglob skips it
            continue
        with entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                        continue
                    if not entry.is_file() or not _hunted(entry.name):
                        continue
                    size = entry.stat().st_size
                except OSError:  # vanished, or a dangling link: nothing to read
                    continue
                yield Source(Path(entry.path), size)


def _hunted(name: str) -> bool:
    suffix = os.path.splitext(name)[1].lower()
    return suffix not in SKIPPED_SUFFIXES


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
    loads = orjson.loads
    for record in parser.records_json():
        if not record:
            continue
        try:
            event = flatten_evtx_record(loads(record["data"]))
        except (ValueError, TypeError, KeyError):
            continue
        # The EventRecordID of the event itself: extracted logs renumber record headers.
        record_id = event.get("EventRecordID") or record.get("event_record_id", 0)
        if record_id.__class__ is not int:
            record_id = int(record_id) if str(record_id).isdigit() else record_id
        yield label, record_id, event


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


# Records read (from as many files as it takes) before they are matched. Reading a file
# and matching its one or two records in turn took a fifth longer than reading a thousand
# records and then matching them: the EVTX parser and the rules' matchers and indexes no
# longer push each other out of the processor's caches at every file.
RECORD_BATCH = 1024

# A file's matches and how many records it held, or why it could not be read.
FileOutcome = tuple[list["HuntMatch"], int] | str


@dataclass
class _FileHunt:
    """One file's part of a hunt, while its records are read and matched."""

    index: int
    matches: list[HuntMatch] = field(default_factory=list)
    records: int = 0
    error: str | None = None


# A record read and waiting to be matched: its file, its place in the file (1-based: the
# fallback time of correlations), where it came from and the event.
_Record = tuple[_FileHunt, int, str, int | str, dict[str, Any]]


def hunt_files(detector: Detector, paths: Sequence[Path]) -> Iterator[tuple[int, FileOutcome]]:
    """Run the detector over files; yield each file's index and outcome, in order.

    A file that cannot be read (or stops being readable part way) yields its error, and
    none of its matches; the others go on. Records are matched RECORD_BATCH at a time.
    """
    batch: list[_Record] = []
    read: deque[_FileHunt] = deque()  # files read, whose records may not all be matched yet
    for index, path in enumerate(paths):
        current = _FileHunt(index)
        read.append(current)
        try:
            for label, record_id, event in read_records(path):
                current.records += 1
                batch.append((current, current.records, label, record_id, event))
                if len(batch) >= RECORD_BATCH:
                    _match(detector, batch)
                    batch.clear()
                    while len(read) > 1:  # all but the file being read are complete
                        yield _outcome(read.popleft())
        except Exception as error:  # a broken file is reported; the hunt goes on
            current.error = _failure(path, error)
    _match(detector, batch)
    while read:
        yield _outcome(read.popleft())


def _outcome(hunted: _FileHunt) -> tuple[int, FileOutcome]:
    if hunted.error is not None:
        return hunted.index, hunted.error
    return hunted.index, (hunted.matches, hunted.records)


def _match(detector: Detector, batch: Sequence[_Record]) -> None:
    """Match a batch of records, adding each match to its file's."""
    timed = bool(detector.correlations)  # only correlations need each event's own time
    rules = detector.rules  # without correlations, each rule match is a hit as it is
    hits: Sequence[Hit | Match]
    for hunted, position, label, record_id, event in batch:
        if hunted.error is not None:
            continue
        if timed:
            hits = detector.evaluate(event, event_time(event, float(position)))
        else:
            hits = rules.evaluate(event)
        if not hits:
            continue
        timestamp = _timestamp(event)
        for hit in hits:
            hunted.matches.append(
                HuntMatch(
                    hit.rule_id,
                    hit.title,
                    hit.level,
                    label,
                    record_id,
                    timestamp,
                    tuple(hit.tags),
                    _plain(hit.matched),
                )
            )


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in values.items()}


# --- parallel runs -------------------------------------------------------------------

_WORKER: Detector | None = None
_FORKED: Detector | None = None  # the parent's, which forked workers inherit


def _start_worker(rows: bytes | None) -> None:
    global _WORKER
    if rows is None:  # a forked worker: the parent's rules and code are already here
        _WORKER = _FORKED
        assert _WORKER is not None
        _WORKER.rules.take_fresh_code()  # the parent reports its own
    else:
        rules = [CompiledRule.from_row(row, row[ROW_PATH]) for row in marshal.loads(rows)]  # noqa: S302 - from our parent
        _WORKER = Detector(RuleSet(rules, keep_fresh_code=True))


# A file's matches (each as HuntMatch's fields, in order) and records, or its error.
SentOutcome = tuple[list[tuple[Any, ...]], int] | str
BATCHES_PER_WORKER = 8  # per hunting process: one task per file would cost too much


def _work(
    paths: Sequence[str],
) -> tuple[list[SentOutcome], dict[str, tuple[int, str]], dict[str, bytes]]:
    """Hunt through a batch of files in a worker; each file's outcome, errors and new code."""
    assert _WORKER is not None
    ruleset = _WORKER.rules
    before = {rule_id: e.count for rule_id, e in ruleset.errors.items()}
    outcomes: list[SentOutcome] = []
    for _, outcome in hunt_files(_WORKER, [Path(path) for path in paths]):
        if isinstance(outcome, str):
            outcomes.append(outcome)
        else:
            matches, records = outcome
            outcomes.append(([_fields(m) for m in matches], records))
    raised = {
        rule_id: (e.count - before.get(rule_id, 0), e.last)
        for rule_id, e in ruleset.errors.items()
        if e.count > before.get(rule_id, 0)
    }
    return outcomes, raised, ruleset.take_fresh_code()


def _fields(match: HuntMatch) -> tuple[Any, ...]:
    """Return a match as a tuple of its fields: cheaper to send back than a mapping."""
    return (
        match.rule_id,
        match.rule_title,
        match.level,
        match.file,
        match.record_id,
        match.timestamp,
        match.tags,
        match.matched,
    )


def _failure(path: str | Path, error: Exception) -> str:
    return f"{path}: {type(error).__name__}: {error}"


def _batches(sources: Sequence[Source], count: int) -> list[list[Source]]:
    """Split the sources (largest first) into up to `count` batches of similar size."""
    batches: list[list[Source]] = [[] for _ in range(min(count, len(sources)))]
    totals = [(0, index) for index in range(len(batches))]
    for source in sources:
        total, index = heapq.heappop(totals)
        batches[index].append(source)
        heapq.heappush(totals, (total + max(source.size, 1), index))
    return [batch for batch in batches if batch]


@dataclass
class HuntResult:
    """Everything a hunt found."""

    matches: list[HuntMatch]
    records: int
    files: int
    errors: list[str]
    rule_errors: dict[str, RuleErrors] = field(default_factory=dict)
    code: dict[str, bytes] = field(default_factory=dict)  # matchers compiled from source

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
    code: Mapping[str, bytes] | None = None,
) -> HuntResult:
    """Hunt through every source; in parallel unless there are correlations to keep.

    Without `jobs`, small inputs (under PARALLEL_MIN_RECORDS, estimated) are read in this
    process: starting workers would cost more than it saves. `code` is the matcher code the
    rule cache kept (`LoadedRules.code`); what had to be compiled comes back in `code`.
    """
    if jobs is None:
        jobs = 1 if not _enough_records(sources, PARALLEL_MIN_RECORDS) else os.cpu_count() or 1
    result = HuntResult([], 0, len(sources), [])
    detector = Detector(RuleSet(rules, code=code or {}, keep_fresh_code=True), correlations)
    # What is alive now (the rules above all) lives through the hunt: the collector need
    # not walk it again, and forked workers do not copy its memory by walking it.
    gc.freeze()
    try:
        if jobs == 1 or len(sources) == 1 or correlations:
            _hunt_here(result, detector, sources, on_file_done)
        else:
            _hunt_in_parallel(result, detector, sources, min(jobs, len(sources)), on_file_done)
    finally:
        gc.unfreeze()
    for rule_id, errors in detector.rules.errors.items():
        result.count_rule_errors(rule_id, errors.count, errors.last)
    result.code.update(detector.rules.take_fresh_code())
    return result


def _hunt_in_parallel(
    result: HuntResult,
    detector: Detector,
    sources: Sequence[Source],
    jobs: int,
    on_file_done: Callable[[Source], None] | None,
) -> None:
    """Hunt in this process and `jobs - 1` workers, each taking a batch of files at a time."""
    import multiprocessing  # only here: most hunts are small enough for one process
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    global _FORKED
    # Forked workers inherit the rules; elsewhere (spawn) they get them as rows.
    forking = "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux"
    context = multiprocessing.get_context("fork" if forking else None)
    rules = detector.rules.rules
    payload = None if forking else marshal.dumps([rule.to_row() for rule in rules])
    workers = jobs - 1
    batches = deque(_batches(sources, jobs * BATCHES_PER_WORKER))
    _FORKED = detector
    try:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(payload,),
        ) as pool:
            pending: dict[Future[Any], list[Source]] = {}
            while batches or pending:
                # Each worker holds a batch, and another queued while many are left: handing
                # it the next one as it finishes waits for this process's batch.
                while batches and len(pending) < workers * (2 if len(batches) > jobs else 1):
                    batch = batches.popleft()
                    pending[pool.submit(_work, [str(source.path) for source in batch])] = batch
                if batches:
                    _hunt_here(result, detector, batches.popleft(), on_file_done)
                else:
                    wait(pending, return_when=FIRST_COMPLETED)
                for future in [future for future in pending if future.done()]:
                    _finished(result, pending.pop(future), future, on_file_done)
    finally:
        _FORKED = None


def _enough_records(sources: Sequence[Source], wanted: int) -> bool:
    """Whether the sources hold at least `wanted` records, by a cheap estimate.

    The first ESTIMATE_SAMPLE sources (the largest) are estimated one by one; the others
    as holding, on average, as many records as those: opening thousands of small EVTX files
    to read their chunk headers took longer than the hunt it was deciding about.
    """
    total = 0
    for count, source in enumerate(sources, start=1):
        total += estimated_records(source)
        if total >= wanted:
            return True
        if count == ESTIMATE_SAMPLE:
            return total * len(sources) >= wanted * count
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
    result: HuntResult,
    batch: Sequence[Source],
    future: Future[Any],
    on_file_done: Callable[[Source], None] | None,
) -> None:
    """Add a worker's batch to the result (a worker that died fails each of its files)."""
    try:
        outcomes, raised, code = future.result()
    except Exception as error:
        outcomes, raised, code = [_failure(source.path, error) for source in batch], {}, {}
    for rule_id, (count, last) in raised.items():
        result.count_rule_errors(rule_id, count, last)
    result.code.update(code)
    for source, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, str):
            result.errors.append(outcome)
        else:
            items, records = outcome
            result.matches.extend(HuntMatch(*item) for item in items)
            result.records += records
        if on_file_done:
            on_file_done(source)


def _hunt_here(
    result: HuntResult,
    detector: Detector,
    sources: Sequence[Source],
    on_file_done: Callable[[Source], None] | None,
) -> None:
    """Hunt through these sources in this process."""
    for index, outcome in hunt_files(detector, [source.path for source in sources]):
        if isinstance(outcome, str):
            result.errors.append(outcome)
        else:
            matches, records = outcome
            result.matches.extend(matches)
            result.records += records
        if on_file_done:
            on_file_done(sources[index])


def summary(matches: Iterable[HuntMatch]) -> list[tuple[str, str, str, int]]:
    """Return (level, rule title, rule id, count) rows, most severe and frequent first."""
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}
    counts: dict[tuple[str, str, str], int] = {}
    for match in matches:
        key = (match.level, match.rule_title, match.rule_id)
        counts[key] = counts.get(key, 0) + 1
    rows = [(level, title, rule_id, n) for (level, title, rule_id), n in counts.items()]
    return sorted(rows, key=lambda row: (order.get(row[0], 5), -row[3], row[1]))
