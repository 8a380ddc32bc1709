"""Load Sigma rules from files, folders and zip archives, reporting each broken rule.

A rule pack with broken rules loads the rest; each problem names the file, the line and
the reason. Compiled rules are cached by the content of their file (and the engine
version), so a second load of the same pack skips pySigma's parsing.
"""

from __future__ import annotations

import hashlib
import json
import marshal
import os
import re
import sqlite3
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from puffin.detection.engine.compiled import ENGINE_VERSION, CompiledRule, UnsupportedRule
from puffin.detection.engine.ruleset import code_key

RULE_SUFFIXES = (".yml", ".yaml")
TESTS_SUFFIXES = (".tests.yml", ".tests.yaml")  # a rule's test cases, kept beside it
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RuleProblem:
    """A rule that could not be loaded: where and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class RuleFile:
    """The text of one rule file and where it came from."""

    path: str
    text: str


@dataclass
class LoadedRules:
    """What a load produced."""

    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[RuleFile] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    files: int = 0
    cached: int = 0
    code: dict[str, bytes] = field(default_factory=dict)  # marshalled matchers, by code_key


def iter_rule_files(paths: Sequence[str | Path]) -> Iterator[RuleFile]:
    """Yield rule files from files, folders (recursively) and zip archives."""
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            for child in _rule_files_under(path):
                yield RuleFile(child, _read_text(child))
        elif path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for name in sorted(archive.namelist()):
                    if _is_rule_file(name):
                        text = archive.read(name).decode("utf-8", errors="replace")
                        yield RuleFile(f"{path}!{name}", text)
        elif path.exists():
            yield RuleFile(str(path), path.read_text("utf-8", errors="replace"))
        else:
            raise FileNotFoundError(f"no such rule file or folder: {path}")


def _read_text(path: str) -> str:
    """Return a file's text as `open(path, encoding="utf-8", errors="replace")` reads it.

    Read unbuffered and decoded here: the same text (new lines made `\\n`) in fewer
    system calls, which counts for the thousands of files of a rule collection.
    """
    with open(path, "rb", buffering=0) as handle:
        text = handle.readall().decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


# libyaml's parser when PyYAML has it: the same documents as `yaml.safe_load_all` (which
# pySigma's `from_yaml` uses) in a fraction of the time, most of a cold load otherwise.
SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_documents(text: str) -> list[Any]:
    """Parse every YAML document of a rule file, like `yaml.safe_load_all`."""
    return list(yaml.load_all(text, Loader=SafeLoader))  # a safe loader (C or Python)


def _is_rule_file(name: str) -> bool:
    return name.endswith(RULE_SUFFIXES) and not name.endswith(TESTS_SUFFIXES)


def _rule_files_under(folder: Path) -> list[str]:
    """Rule files below a folder, in path order (os.walk: much faster than Path.rglob)."""
    found = [
        os.path.join(root, name)
        for root, _dirs, names in os.walk(folder)
        for name in names
        if _is_rule_file(name)
    ]
    # By path components, as Path.parts would order them (every name shares the folder's
    # own spelling as prefix, so splitting the text gives the same order, much faster).
    return sorted(found, key=lambda name: name.split(os.sep))


class RuleCache:
    """Compiled rules by file content, and their matchers' code, in a small SQLite database.

    Code objects are stored as `marshal` data (what `.pyc` files hold), keyed by the
    matcher's source and the Python that compiled it (`ruleset.code_key`), so another
    Python or another source never loads them. The folder is made private when created:
    like the sources beside it, that code runs in whoever loads the cache.
    """

    CHUNK = 500  # keys per query, under SQLite's limit of bound parameters

    def __init__(self, path: Path) -> None:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.parent.chmod(0o700)
        self._db = sqlite3.connect(path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("DROP TABLE IF EXISTS compiled")  # JSON bodies, before ENGINE_VERSION 6
        self._db.execute("CREATE TABLE IF NOT EXISTS rules (key TEXT PRIMARY KEY, body BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS code (key TEXT PRIMARY KEY, code BLOB)")

    def get_many(self, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Return the bodies stored for these keys, by key (absent keys are left out).

        A body is `compile_file`'s result, its rules as `CompiledRule.to_row` tuples; one
        that cannot be read back counts as absent, so its file is compiled again.
        """
        found: dict[str, dict[str, Any]] = {}
        for key, blob in self._rows("SELECT key, body FROM rules WHERE key IN ({})", keys):
            try:
                body = marshal.loads(blob)  # noqa: S302 - our own private cache
            except (EOFError, ValueError, TypeError):
                continue
            if isinstance(body, dict):
                found[key] = body
        return found

    def put(self, key: str, body: Mapping[str, Any]) -> None:
        """Store `compile_file`'s result for a rule file's key."""
        blob = marshal.dumps(dict(body))
        self._db.execute("INSERT OR REPLACE INTO rules (key, body) VALUES (?, ?)", (key, blob))

    def code(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Return the marshalled code stored for these `ruleset.code_key` keys, by key."""
        return dict(self._rows("SELECT key, code FROM code WHERE key IN ({})", keys))

    def put_code(self, code: Mapping[str, bytes]) -> None:
        """Store marshalled matcher code by `ruleset.code_key`."""
        self._db.executemany(
            "INSERT OR REPLACE INTO code (key, code) VALUES (?, ?)", list(code.items())
        )

    def _rows(self, query: str, keys: Sequence[str]) -> Iterator[tuple[Any, Any]]:
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), self.CHUNK):
            chunk = unique[start : start + self.CHUNK]
            yield from self._db.execute(query.format(",".join("?" * len(chunk))), chunk)

    def close(self) -> None:
        self._db.commit()
        self._db.close()


def _key(text: str, placeholders: Mapping[str, Sequence[str]]) -> str:
    return _keys(placeholders)(text)


def _keys(placeholders: Mapping[str, Sequence[str]]) -> Callable[[str], str]:
    """Return the function giving a rule file's cache key: its text, these placeholders."""
    prefix = hashlib.sha256(ENGINE_VERSION.encode())
    prefix.update(json.dumps(placeholders, sort_keys=True).encode())

    def key(text: str) -> str:
        digest = prefix.copy()
        digest.update(text.encode())
        return digest.hexdigest()

    return key


def load_rules(
    paths: Sequence[str | Path],
    *,
    placeholders: Mapping[str, Sequence[str]] | None = None,
    cache: RuleCache | None = None,
    progress: Progress | None = None,
    jobs: int = 1,
    matcher_code: bool = False,
) -> LoadedRules:
    """Load and compile every rule under the paths; broken rules become problems.

    Rules not in the cache are parsed by pySigma, in `jobs` processes when there are many.
    With `matcher_code`, the matchers' code the cache holds for these rules comes back in
    `code` (for `RuleSet(code=…)`).
    """
    files = list(iter_rule_files(paths))
    result = LoadedRules(files=len(files))
    values = placeholders or {}
    key = _keys(values)
    keys = [key(rule_file.text) for rule_file in files]
    found = cache.get_many(keys) if cache else {}
    bodies = [found.get(key) for key in keys]
    result.cached = sum(body is not None for body in bodies)
    missing = [index for index, body in enumerate(bodies) if body is None]
    compiled = _compile_files([files[index] for index in missing], values, jobs)
    for index, fresh in zip(missing, compiled, strict=True):
        bodies[index] = fresh
        if cache:
            cache.put(keys[index], fresh)
    from_row = CompiledRule.from_row
    for done, (rule_file, body) in enumerate(zip(files, bodies, strict=True), start=1):
        assert body is not None
        # The cache is keyed by content: the same text may have been stored from another path.
        path = rule_file.path
        for row in body["rules"]:
            result.rules.append(from_row(row, path))
        for problem in body["problems"]:
            result.problems.append(RuleProblem(path, problem["line"], problem["reason"]))
        if body["correlation"]:
            result.correlations.append(rule_file)
        if progress:
            progress(done, len(files))
    if cache and matcher_code and result.rules:
        result.code = cache.code([code_key(rule) for rule in result.rules])
    return result


PARALLEL_MIN_FILES = 64  # below this, starting worker processes costs more than it saves


def _compile_files(
    files: Sequence[RuleFile], placeholders: Mapping[str, Sequence[str]], jobs: int
) -> list[dict[str, Any]]:
    """Compile rule files, in worker processes when there are enough of them."""
    jobs = min(jobs, len(files) // (PARALLEL_MIN_FILES // 2) or 1)
    if jobs <= 1:
        return [compile_file(rule_file, placeholders) for rule_file in files]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=jobs) as pool:
        work = partial(compile_file, placeholders=dict(placeholders))
        return list(pool.map(work, files, chunksize=max(1, len(files) // (jobs * 8))))


def compile_file(rule_file: RuleFile, placeholders: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """Parse one file with pySigma and compile its rules; return plain data to cache.

    Rules come as `CompiledRule.to_row` tuples, problems as dicts: what `marshal` stores.
    """
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule
    from sigma.rule import SigmaRule

    from puffin.detection.engine.compiler import compile_rule  # also extends pySigma's modifiers

    body: dict[str, Any] = {"rules": [], "problems": [], "correlation": False}
    try:
        collection = SigmaCollection.from_dicts(yaml_documents(rule_file.text), collect_errors=True)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        body["problems"].append(_problem(rule_file, line, f"not valid YAML: {error}"))
        return body
    except Exception as error:
        body["problems"].append(_problem(rule_file, 1, str(error)))
        return body
    for problem in collection.errors:
        line = _error_line(problem, rule_file.text)
        body["problems"].append(_problem(rule_file, line, str(problem)))
    for rule in collection.rules:
        if isinstance(rule, SigmaCorrelationRule):
            body["correlation"] = True
            continue
        if not isinstance(rule, SigmaRule):
            body["problems"].append(_problem(rule_file, 1, "filters are not supported yet"))
            continue
        try:
            compiled = compile_rule(rule, placeholders=placeholders)
        except (UnsupportedRule, Exception) as error:
            line = _line_of(rule_file.text, "condition:") or _line_of(rule_file.text, "detection:")
            body["problems"].append(_problem(rule_file, line or 1, str(error)))
            continue
        line = _line_of(rule_file.text, "title:") or 1
        body["rules"].append(replace(compiled, path=rule_file.path, line=line).to_row())
    return body


def _problem(rule_file: RuleFile, line: int, reason: str) -> dict[str, Any]:
    return {"path": rule_file.path, "line": line, "reason": reason.splitlines()[0][:500]}


def _error_line(error: Exception, text: str) -> int:
    source = getattr(error, "source", None)
    line = getattr(source, "line", None)
    if isinstance(line, int) and line > 0:
        return line
    match = re.search(r"'([^']+)'", str(error))
    found = _line_of(text, match.group(1)) if match else 0
    return found or 1


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    return 0


def compile_correlations(files: Sequence[RuleFile]) -> tuple[list[Any], list[RuleProblem]]:
    """Compile the correlation rules of files that hold them (with their base rules)."""
    if not files:
        return [], []
    from sigma.collection import SigmaCollection
    from sigma.correlations import SigmaCorrelationRule

    import puffin.detection.engine.compiler  # noqa: F401 - registers pySigma modifier aliases
    from puffin.detection.engine.correlation import compile_correlation

    compiled: list[Any] = []
    problems: list[RuleProblem] = []
    for rule_file in files:
        try:
            collection = SigmaCollection.from_dicts(
                yaml_documents(rule_file.text), collect_errors=True
            )
            collection.resolve_rule_references()
        except Exception as error:  # reported like any broken rule
            problems.append(RuleProblem(rule_file.path, 1, str(error).splitlines()[0]))
            continue
        for rule in collection.rules:
            if not isinstance(rule, SigmaCorrelationRule):
                continue
            try:
                compiled.append(compile_correlation(rule))
            except Exception as error:  # ValueError and pySigma errors
                line = _line_of(rule_file.text, "correlation:") or 1
                problems.append(RuleProblem(rule_file.path, line, str(error).splitlines()[0]))
    return compiled, problems
