"""The server's rule registry: every rule pack loaded into one immutable snapshot.

Packs are the built-in pack and each folder under `<data_dir>/rules/<pack>/`. A reload
builds a whole new snapshot (compiled rule set, catalogue, problems) and swaps it in with
one assignment, so readers never see half a reload. A rule id seen twice keeps its first
copy; the second is reported as a problem naming both files.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from puffin.core.state import AppState
from puffin.detection.engine.compiler import CompiledRule
from puffin.detection.engine.correlation import CompiledCorrelation
from puffin.detection.engine.options import Dedupe
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import (
    RULE_SUFFIXES,
    RuleCache,
    RuleFile,
    RuleProblem,
    compile_correlations,
    load_rules,
)

BUILTIN_PACK = "builtin"
PACKS_FOLDER = "rules"
CACHE_FILE = ("cache", "rules.sqlite")
STATE_KEY = "rule_registry"
TEST_SUFFIXES = (".tests.yml", ".tests.yaml")
SKIPPED_FOLDERS = frozenset({"regression_data"})

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RuleEntry:
    """What the catalogue shows of one rule: a detection rule or a correlation."""

    id: str
    title: str
    level: str
    status: str
    kind: str
    pack: str
    path: str
    file: str
    line: int
    tags: tuple[str, ...] = ()
    product: str = ""
    category: str = ""
    service: str = ""
    description: str = ""
    falsepositives: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    dedupe: Dedupe | None = None  # the rule's own `puffin: dedupe`; None: the server default

    @property
    def logsource(self) -> str:
        """Return the logsource as `product / category / service` (parts present only)."""
        return " / ".join(p for p in (self.product, self.category, self.service) if p)


@dataclass(frozen=True)
class PackProblem:
    """A rule of a pack that did not load (or was ignored), with its place and reason."""

    pack: str
    path: str
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Pack:
    """Where a pack lives and what it holds."""

    name: str
    root: Path
    files: tuple[Path, ...]


@dataclass(frozen=True)
class RuleSetSnapshot:
    """One consistent view of every loaded rule; never changed after it is built."""

    ruleset: RuleSet
    correlations: tuple[CompiledCorrelation, ...]
    entries: Mapping[str, RuleEntry]
    problems: tuple[PackProblem, ...]
    packs: tuple[str, ...]
    loaded_at: datetime

    def dedupe_of(self, rule_id: str) -> Dedupe | None:
        """Return the rule's own dedupe option, None when it has none (or is unknown)."""
        entry = self.entries.get(rule_id)
        return entry.dedupe if entry else None

    def pack_of(self, rule_id: str) -> str | None:
        """Return the pack a rule came from, or None for an unknown id."""
        entry = self.entries.get(rule_id)
        return entry.pack if entry else None

    @classmethod
    def empty(cls) -> RuleSetSnapshot:
        """Return the snapshot of a registry that has not loaded yet."""
        return cls(RuleSet([]), (), {}, (), (), datetime.fromtimestamp(0, UTC))


class RuleRegistry:
    """Loads the rule packs of one server and holds the current snapshot."""

    def __init__(
        self,
        data_dir: Path,
        *,
        extra_paths: Sequence[Path] = (),
        placeholders: Mapping[str, Sequence[str]] | None = None,
        include_builtin: bool = True,
    ) -> None:
        self.data_dir = data_dir
        self.extra_paths = tuple(extra_paths)
        self.placeholders = dict(placeholders or {})
        self.include_builtin = include_builtin
        self.current = RuleSetSnapshot.empty()
        self._lock = threading.Lock()
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()

    @property
    def packs_dir(self) -> Path:
        """Return the folder that holds imported packs."""
        return self.data_dir / PACKS_FOLDER

    def packs(self) -> list[Pack]:
        """Return the packs in load order: built-in, imported by name, extra paths."""
        found: list[Pack] = []
        builtin = builtin_pack_path() if self.include_builtin else None
        if builtin is not None:
            found.append(Pack(BUILTIN_PACK, builtin, tuple(pack_files(builtin))))
        if self.packs_dir.is_dir():
            for folder in sorted(self.packs_dir.iterdir()):
                if folder.is_dir() and not folder.name.startswith("."):
                    found.append(Pack(folder.name, folder, tuple(pack_files(folder))))
        for path in self.extra_paths:
            found.append(Pack(path.stem, path, tuple(pack_files(path))))
        return found

    def reload(self, progress: Progress | None = None) -> RuleSetSnapshot:
        """Load every pack again and swap the new snapshot in; return it."""
        with self._lock:
            packs = self.packs()
            cache = RuleCache(self.data_dir.joinpath(*CACHE_FILE))
            try:
                snapshot = build_snapshot(packs, cache, self.placeholders, progress)
            finally:
                cache.close()
            self._fingerprint = _fingerprint(packs)
            self.current = snapshot
            return snapshot

    def needs_reload(self) -> bool:
        """Return whether any pack's files changed since the last reload (cheap: stats)."""
        return _fingerprint(self.packs()) != self._fingerprint


def rule_registry(state: AppState) -> RuleRegistry:
    """Return the application's rule registry."""
    registry: RuleRegistry = state.extras[STATE_KEY]
    return registry


def builtin_pack_path() -> Path | None:
    """Return the folder of Puffin's built-in pack, or None when it is not installed."""
    try:
        module: Any = importlib.import_module("puffin.detection.rules")
        path = Path(module.builtin_pack_path())
    except (ImportError, AttributeError):
        return None
    return path if path.exists() else None


def pack_files(root: Path, *, with_tests: bool = False) -> list[Path]:
    """Return the rule files of a pack: YAML files, without hidden folders (and tests)."""
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix in RULE_SUFFIXES
        and not is_skipped(path.relative_to(root).as_posix(), with_tests=with_tests)
        and path.is_file()
    )


def is_skipped(relative: str, *, with_tests: bool = False) -> bool:
    """Return whether a path inside a pack holds no rule (hidden, regression data, tests)."""
    parts = PurePosixPath(relative).parts
    if not parts or any(p.startswith(".") or p in SKIPPED_FOLDERS for p in parts[:-1]):
        return True
    name = parts[-1]
    return name.startswith(".") or (not with_tests and name.endswith(TEST_SUFFIXES))


def build_snapshot(
    packs: Sequence[Pack],
    cache: RuleCache | None,
    placeholders: Mapping[str, Sequence[str]],
    progress: Progress | None = None,
) -> RuleSetSnapshot:
    """Load the packs' files one by one and build a snapshot; first copy of an id wins."""
    total = sum(len(pack.files) for pack in packs)
    collector = _Collector()
    done = 0
    for pack in packs:
        for path in pack.files:
            collector.add_file(pack, path, cache, placeholders)
            done += 1
            if progress:
                progress(done, total)
    return RuleSetSnapshot(
        ruleset=RuleSet(collector.rules),
        correlations=tuple(collector.correlations),
        entries=dict(collector.entries),
        problems=tuple(collector.problems),
        packs=tuple(pack.name for pack in packs),
        loaded_at=datetime.now(UTC),
    )


@dataclass
class _Collector:
    """What a reload gathers, file after file."""

    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[CompiledCorrelation] = field(default_factory=list)
    entries: dict[str, RuleEntry] = field(default_factory=dict)
    problems: list[PackProblem] = field(default_factory=list)

    def add_file(
        self,
        pack: Pack,
        path: Path,
        cache: RuleCache | None,
        placeholders: Mapping[str, Sequence[str]],
    ) -> None:
        file = _relative(pack, path)
        try:
            loaded = load_rules([path], placeholders=placeholders, cache=cache)
        except (OSError, ValueError) as error:
            self.problems.append(PackProblem(pack.name, str(path), file, 1, str(error)))
            return
        self._note(pack, file, loaded.problems)
        text = path.read_text("utf-8", errors="replace") if len(loaded.rules) > 1 else ""
        for rule in loaded.rules:
            if self._keep(_entry_of(rule, pack, file, _line_of(text, rule.id) or rule.line)):
                self.rules.append(rule)
        for rule_file in loaded.correlations:
            self._add_correlations(pack, file, rule_file)

    def _add_correlations(self, pack: Pack, file: str, rule_file: RuleFile) -> None:
        compiled, problems = compile_correlations([rule_file])
        self._note(pack, file, problems)
        metadata = _correlation_metadata(rule_file.text)
        for correlation in compiled:
            entry = _correlation_entry(correlation, metadata, pack, rule_file, file)
            if self._keep(entry):
                self.correlations.append(correlation)

    def _note(self, pack: Pack, file: str, problems: Iterable[RuleProblem]) -> None:
        reasons: set[str] = set()
        for problem in problems:
            # pySigma may report one mistake twice (parsing, then compiling): keep it once.
            if problem.reason not in reasons:
                reasons.add(problem.reason)
                self.problems.append(
                    PackProblem(pack.name, problem.path, file, problem.line, problem.reason)
                )

    def _keep(self, entry: RuleEntry) -> bool:
        first = self.entries.get(entry.id)
        if first is None:
            self.entries[entry.id] = entry
            return True
        reason = (
            f"duplicate rule id {entry.id}: this copy is ignored; the one kept is "
            f"{first.file}:{first.line} in pack {first.pack}"
        )
        self.problems.append(PackProblem(entry.pack, entry.path, entry.file, entry.line, reason))
        return False


def _relative(pack: Pack, path: Path) -> str:
    if pack.root.is_file():
        return path.name
    try:
        return path.relative_to(pack.root).as_posix()
    except ValueError:
        return path.name


def _line_of(text: str, needle: str) -> int:
    """Return the first line holding the text (a rule's id places it in a multi-rule file)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 0


def _entry_of(rule: CompiledRule, pack: Pack, file: str, line: int) -> RuleEntry:
    return RuleEntry(
        id=rule.id,
        title=rule.title,
        level=rule.level,
        status=rule.status,
        kind="detection",
        pack=pack.name,
        path=rule.path,
        file=file,
        line=line,
        tags=rule.tags,
        product=rule.product,
        category=rule.category,
        service=rule.service,
        description=rule.description,
        falsepositives=rule.falsepositives,
        warnings=rule.warnings,
        dedupe=rule.dedupe,
    )


def _correlation_metadata(text: str) -> dict[str, dict[str, Any]]:
    """Return the correlation documents of a file by id (the loader reported YAML errors)."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]
    except yaml.YAMLError:
        return {}
    return {str(d["id"]): d for d in documents if "correlation" in d and d.get("id")}


def _correlation_entry(
    correlation: CompiledCorrelation,
    metadata: Mapping[str, Mapping[str, Any]],
    pack: Pack,
    rule_file: RuleFile,
    file: str,
) -> RuleEntry:
    document = metadata.get(correlation.id, {})
    line = _line_of(rule_file.text, correlation.id) or 1
    return RuleEntry(
        id=correlation.id,
        title=correlation.title,
        level=correlation.level,
        status=str(document.get("status") or ""),
        kind="correlation",
        pack=pack.name,
        path=rule_file.path,
        file=file,
        line=line,
        tags=tuple(correlation.tags),
        description=str(document.get("description") or ""),
        falsepositives=tuple(str(f) for f in document.get("falsepositives") or ()),
        dedupe=correlation.dedupe,
    )


def _fingerprint(packs: Sequence[Pack]) -> tuple[tuple[str, int, int], ...]:
    marks: list[tuple[str, int, int]] = []
    for pack in packs:
        for path in pack.files:
            try:
                stat = path.stat()
            except OSError:
                continue
            marks.append((str(path), stat.st_mtime_ns, stat.st_size))
    return tuple(marks)


def read_source(entry: RuleEntry, limit: int = 256 * 1024) -> str:
    """Return the YAML text of the file a rule came from (at most `limit` characters)."""
    try:
        with open(entry.path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError as error:
        return f"# the rule file cannot be read: {error.strerror or error}"
