"""Run the positive and negative test cases kept beside Sigma rules in `<rule>.tests.yml`.

A tests file sits beside its rule file (`ssh_root_login.yml` and
`ssh_root_login.tests.yml`) and holds one YAML document per tested rule:

    rule: <id, name or title>   # optional when the file holds one rule or one correlation
    positive: [case, ...]       # each case must make the rule fire at least once
    negative: [case, ...]       # no case may make it fire

A case is `line:` (a raw log line, decoded as ingest decodes it), `event:` (an event
mapping) or `sequence:` (a list of lines or events, each with `at:`, seconds from the
start, and optionally `repeat:` and `every:` to send it several times), with an optional
`name:`. Every case runs alone against all the rules loaded,
with a fresh correlation state, so one case never influences another.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from puffin.detection.engine.correlation import CompiledCorrelation, CorrelationState
from puffin.detection.engine.ruleset import Match, RuleSet
from puffin.detection.loader import RULE_SUFFIXES, RuleFile, RuleProblem, load_rules

__all__ = [
    "CaseFailure",
    "RuleTestResult",
    "TestReport",
    "is_tests_file",
    "rule_tests_path",
    "run_tests",
]

TESTS_SUFFIXES = (".tests.yml", ".tests.yaml")
START = 1_700_000_000.0
"""Epoch seconds of `at: 0` in a case."""
MAX_REPEAT = 10_000
CaseKind = Literal["positive", "negative"]
TimedEvent = tuple[dict[str, Any], float]


@dataclass(frozen=True)
class CaseFailure:
    """One case that did not behave as its section says, and what happened instead."""

    kind: CaseKind
    index: int
    reason: str
    name: str = ""

    def __str__(self) -> str:
        label = f"{self.kind} #{self.index}" + (f" ({self.name})" if self.name else "")
        return f"{label}: {self.reason}"


@dataclass(frozen=True)
class RuleTestResult:
    """The outcome of one rule's cases."""

    rule_id: str
    title: str
    file: str
    tests_file: str = ""
    positives: int = 0
    negatives: int = 0
    failures: tuple[CaseFailure, ...] = ()
    correlation: bool = False

    @property
    def tested(self) -> bool:
        """Whether any case exercised the rule."""
        return self.positives + self.negatives > 0

    @property
    def passed(self) -> bool:
        """Whether the rule has cases and all of them passed."""
        return self.tested and not self.failures

    @property
    def status(self) -> Literal["passed", "failed", "untested"]:
        """Say passed, failed, or untested (no case names this rule)."""
        if self.failures:
            return "failed"
        return "passed" if self.tested else "untested"


@dataclass
class TestReport:
    """Per-rule results of a run, and the rule or tests files that could not be read."""

    __test__ = False  # not a pytest class, despite its name

    results: list[RuleTestResult] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing failed and every file could be read (untested rules allowed)."""
        return not self.problems and not self.failed

    @property
    def failed(self) -> list[RuleTestResult]:
        """Return the rules with at least one failing case."""
        return [result for result in self.results if result.failures]

    @property
    def untested(self) -> list[RuleTestResult]:
        """Return the rules no case exercises."""
        return [result for result in self.results if not result.tested]


@dataclass(frozen=True)
class _Target:
    """A rule under test: a detection rule or a correlation, with the file it came from."""

    id: str
    title: str
    name: str
    file: str
    correlation: CompiledCorrelation | None = None

    def known_as(self, reference: str) -> bool:
        return reference in (self.id, self.name, self.title)


class _CaseError(ValueError):
    """A case that cannot run (bad shape, no decoder); reported as that case's failure."""


def is_tests_file(path: str | Path) -> bool:
    """Say whether a file holds rule tests rather than a rule."""
    return Path(path).name.endswith(TESTS_SUFFIXES)


def rule_tests_path(rule_path: str | Path) -> Path | None:
    """Return the tests file beside a rule file, if there is one."""
    path = Path(rule_path)
    for suffix in TESTS_SUFFIXES:
        candidate = path.with_name(path.stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def run_tests(paths: Sequence[str | Path] | None = None) -> TestReport:
    """Load the rules under the paths (the built-in pack by default) and run their tests."""
    if paths is None:
        from puffin.detection.rules import builtin_pack_path

        paths = [builtin_pack_path()]
    rule_files = _rule_files(paths)
    loaded = load_rules(rule_files)
    correlations, problems = _compile_correlations(loaded.correlations)
    report = TestReport(problems=[*loaded.problems, *problems])
    targets = _targets(rule_files, loaded.rules, correlations)
    runner = _Runner(RuleSet(loaded.rules), [target.correlation for target in correlations])
    for rule_file, file_targets in targets.items():
        tests = rule_tests_path(rule_file)
        cases = _assign(tests, file_targets, report.problems) if tests else {}
        for target in file_targets:
            sections = cases.get(target.id, [])
            report.results.append(runner.result(target, str(tests or ""), sections))
    return report


def _rule_files(paths: Sequence[str | Path]) -> list[str]:
    """Expand folders into rule files (tests files left out); keep zips and files as given."""
    found: list[str] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            children = sorted(entry.rglob("*"))
            found += [str(p) for p in children if p.suffix in RULE_SUFFIXES and p.is_file()]
        elif is_tests_file(entry):
            found += [str(p) for p in _rule_file_of(entry)]
        else:
            found.append(str(entry))
    return [path for path in dict.fromkeys(found) if not is_tests_file(path)]


def _rule_file_of(tests: Path) -> Iterator[Path]:
    stem = tests.name
    for suffix in TESTS_SUFFIXES:
        stem = stem.removesuffix(suffix)
    for suffix in RULE_SUFFIXES:
        candidate = tests.with_name(stem + suffix)
        if candidate.is_file():
            yield candidate


def _compile_correlations(files: Iterable[RuleFile]) -> tuple[list[_Target], list[RuleProblem]]:
    """Parse each file that holds a correlation with its base rules and compile it."""
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule

    import puffin.detection.engine.compiler  # noqa: F401 - registers pySigma modifier aliases
    from puffin.detection.engine.correlation import compile_correlation

    targets: list[_Target] = []
    problems: list[RuleProblem] = []
    for rule_file in files:
        line = _line_of(rule_file.text, "correlation:")
        try:
            collection = SigmaCollection.from_yaml(rule_file.text, collect_errors=True)
        except Exception as error:
            problems.append(RuleProblem(rule_file.path, line, str(error)))
            continue
        for rule in collection.rules:
            if not isinstance(rule, SigmaCorrelationRule):
                continue
            try:
                compiled = compile_correlation(rule)
            except ValueError as error:
                problems.append(RuleProblem(rule_file.path, line, str(error)))
                continue
            target = _Target(compiled.id, compiled.title, compiled.name, rule_file.path, compiled)
            targets.append(target)
    return targets, problems


def _targets(
    rule_files: Sequence[str], rules: Iterable[Any], correlations: Iterable[_Target]
) -> dict[str, list[_Target]]:
    """Group the rules under test by the file they came from, in file order."""
    by_file: dict[str, list[_Target]] = {path: [] for path in rule_files}
    for rule in rules:
        target = _Target(rule.id, rule.title, rule.name, rule.path)
        by_file.setdefault(rule.path, []).append(target)
    for target in correlations:
        by_file.setdefault(target.file, []).append(target)
    return {path: targets for path, targets in by_file.items() if targets}


def _assign(
    tests: Path, targets: Sequence[_Target], problems: list[RuleProblem]
) -> dict[str, list[Mapping[str, Any]]]:
    """Read a tests file and give each document to the rule it names (or the file's rule)."""
    text = tests.read_text("utf-8")
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problems.append(RuleProblem(str(tests), line, f"not valid YAML: {error}"))
        return {}
    assigned: dict[str, list[Mapping[str, Any]]] = {}
    for document in documents:
        target = _target_of(document, targets)
        if isinstance(target, str):
            reference = str(document.get("rule", "")) if isinstance(document, Mapping) else ""
            problems.append(RuleProblem(str(tests), _line_of(text, reference) or 1, target))
            continue
        assigned.setdefault(target.id, []).append(document)
    return assigned


def _target_of(document: Any, targets: Sequence[_Target]) -> _Target | str:
    """Return the rule a tests document is for, or why it has none."""
    if not isinstance(document, Mapping):
        return "a tests document must be a mapping with positive and negative cases"
    reference = document.get("rule")
    if reference is not None:
        found = [target for target in targets if target.known_as(str(reference))]
        return found[0] if found else f"no rule {reference!r} in the rule file"
    candidates = [target for target in targets if target.correlation] or list(targets)
    if len(candidates) != 1:
        return "the rule file holds several rules: name one with `rule:` (id, name or title)"
    return candidates[0]


class _Runner:
    """Runs cases against one rule set; a fresh correlation state for every case."""

    def __init__(
        self, ruleset: RuleSet, correlations: Sequence[CompiledCorrelation | None]
    ) -> None:
        self._ruleset = ruleset
        self._correlations = [c for c in correlations if c is not None]
        self._longest = max((c.timespan_seconds for c in self._correlations), default=0.0)
        self._decoders: Any = None

    def result(
        self, target: _Target, tests: str, documents: Sequence[Mapping[str, Any]]
    ) -> RuleTestResult:
        """Run every case of the documents for one rule."""
        failures: list[CaseFailure] = []
        counts = {"positive": 0, "negative": 0}
        for kind, index, case in _cases(documents):
            counts[kind] += 1
            failure = self._check(target, kind, index, case)
            if failure is not None:
                failures.append(failure)
        if documents:
            failures += _missing_sections(counts)
        return RuleTestResult(
            rule_id=target.id,
            title=target.title,
            file=target.file,
            tests_file=tests,
            positives=counts["positive"],
            negatives=counts["negative"],
            failures=tuple(failures),
            correlation=target.correlation is not None,
        )

    def _check(self, target: _Target, kind: CaseKind, index: int, case: Any) -> CaseFailure | None:
        name = str(case.get("name", "")) if isinstance(case, Mapping) else ""
        errors_before = self._error_count(target.id)
        try:
            events = self._events(case)
            fired, detail = self._fires(target, events)
        except _CaseError as error:
            return CaseFailure(kind, index, str(error), name)
        if self._error_count(target.id) > errors_before:
            raised = self._ruleset.errors[target.id].last
            return CaseFailure(kind, index, f"the rule raised {raised}", name)
        if fired == (kind == "positive"):
            return None
        reason = f"did not fire; {detail}" if kind == "positive" else f"fired: {detail}"
        return CaseFailure(kind, index, reason, name)

    def _error_count(self, rule_id: str) -> int:
        entry = self._ruleset.errors.get(rule_id)
        return entry.count if entry else 0

    def _fires(self, target: _Target, events: Sequence[TimedEvent]) -> tuple[bool, str]:
        if target.correlation is None:
            return self._rule_fires(target, events)
        return self._correlation_fires(target, events)

    def _rule_fires(self, target: _Target, events: Sequence[TimedEvent]) -> tuple[bool, str]:
        others: set[str] = set()
        for number, (event, _) in enumerate(events, start=1):
            matches = self._ruleset.evaluate(event)
            for match in matches:
                if match.rule_id == target.id:
                    return True, f"event {number} matched on {match.matched}"
            others.update(match.title for match in matches)
        return False, _describe(events, others)

    def _correlation_fires(self, target: _Target, events: Sequence[TimedEvent]) -> tuple[bool, str]:
        state = CorrelationState(self._correlations)
        found, seen = [], []
        for event, at in events:
            matches = self._ruleset.evaluate(event)
            seen.append(sorted({match.title for match in matches}))
            found += state.observe(_identifiers(matches), event, START + at)
        end = START + max((at for _, at in events), default=0.0)
        found += state.flush(end + self._longest + 1)
        hits = [match for match in found if match.rule_id == target.id]
        if hits:
            first = hits[0]
            return True, f"{len(hits)} match(es), first for {first.group} after {first.count}"
        fired = sorted({match.title for match in found})
        return False, f"rules matched per event: {_runs(seen)}; correlations fired: {fired}"

    def _events(self, case: Any) -> list[TimedEvent]:
        if not isinstance(case, Mapping):
            raise _CaseError("a case must be a mapping with line, event or sequence")
        if "sequence" not in case:
            return self._step(case, default_at=0.0)
        steps = case["sequence"]
        if not isinstance(steps, list) or not steps:
            raise _CaseError("sequence must be a non-empty list")
        events: list[TimedEvent] = []
        for step in steps:
            events += self._step(step, default_at=events[-1][1] + 1 if events else 0.0)
        return events

    def _step(self, step: Any, *, default_at: float) -> list[TimedEvent]:
        """Return one step's events: once, or `repeat` times `every` seconds apart."""
        if not isinstance(step, Mapping):
            raise _CaseError(f"a sequence step must be a mapping, not {step!r}")
        try:
            at = float(step.get("at", default_at))
            repeat, every = int(step.get("repeat", 1)), float(step.get("every", 1))
        except (TypeError, ValueError) as error:
            raise _CaseError(f"at, repeat and every must be numbers: {error}") from error
        if not 1 <= repeat <= MAX_REPEAT:
            raise _CaseError(f"repeat must be between 1 and {MAX_REPEAT}")
        return [(self._event(step), at + n * every) for n in range(repeat)]

    def _event(self, step: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(step.get("line"), str):
            return self._decode(step["line"])
        if isinstance(step.get("event"), Mapping):
            return dict(step["event"])
        raise _CaseError("a case needs `line` (text), `event` (mapping) or `sequence`")

    def _decode(self, line: str) -> dict[str, Any]:
        if self._decoders is None:
            try:
                from puffin.ingest.decoders import Decoders
            except ImportError as error:
                raise _CaseError(f"the text decoders are not available: {error}") from error
            self._decoders = Decoders()
        return dict(self._decoders.decode(line))


def _cases(documents: Sequence[Mapping[str, Any]]) -> Iterator[tuple[CaseKind, int, Any]]:
    """Yield each case with its section and its index within that section."""
    counters = {"positive": 0, "negative": 0}
    for document in documents:
        kind: CaseKind
        for kind in ("positive", "negative"):
            for case in document.get(kind) or []:
                yield kind, counters[kind], case
                counters[kind] += 1


def _missing_sections(counts: Mapping[str, int]) -> list[CaseFailure]:
    missing: list[CaseFailure] = []
    kind: CaseKind
    for kind in ("positive", "negative"):
        if not counts[kind]:
            reason = f"no {kind} case: a tested rule needs at least one of each"
            missing.append(CaseFailure(kind, 0, reason))
    return missing


def _identifiers(matches: Iterable[Match]) -> set[str]:
    """Return the ids and names of the rules that matched, as correlations refer to them."""
    found = {match.rule_id for match in matches}
    return found | {match.rule.name for match in matches if match.rule.name}


def _runs(items: Sequence[list[str]]) -> str:
    """Write consecutive equal items once with a count: `12 x ['A'], 1 x []`."""
    runs: list[tuple[int, list[str]]] = []
    for item in items:
        if runs and runs[-1][1] == item:
            runs[-1] = (runs[-1][0] + 1, item)
        else:
            runs.append((1, item))
    return ", ".join(f"{count} x {item}" for count, item in runs)


def _describe(events: Sequence[TimedEvent], others: set[str]) -> str:
    keys = ("decoder", "program", "action", "status", "module", "audit_type")
    shapes = [{key: event[key] for key in keys if key in event} for event, _ in events]
    described = f"events decoded as {shapes}"
    return described + (f"; other rules fired: {sorted(others)}" if others else "")


def _line_of(text: str, needle: str) -> int:
    if not needle:
        return 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 0
