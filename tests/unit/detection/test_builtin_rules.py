"""The built-in rule pack loads cleanly, every rule passes its own tests, and the runner reports."""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

import puffin.detection.rules as rules_package
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import load_rules
from puffin.detection.rule_tests import RuleTestResult, is_tests_file, rule_tests_path, run_tests
from puffin.detection.rules import builtin_pack_path

PACK = builtin_pack_path()
RULE_FILES = sorted(
    path for path in PACK.rglob("*.yml") if path.is_file() and not is_tests_file(path)
)
RESULTS = run_tests([PACK]).results
TACTICS = {
    "reconnaissance", "resource-development", "initial-access", "execution", "persistence",
    "privilege-escalation", "defense-evasion", "credential-access", "discovery",
    "lateral-movement", "collection", "command-and-control", "exfiltration", "impact",
}  # fmt: skip


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def _label(result: RuleTestResult) -> str:
    return f"{Path(result.file).stem}: {result.title}"


def test_pack_ships_inside_the_package() -> None:
    assert PACK.is_dir()
    assert PACK.parent == Path(rules_package.__file__).parent
    assert len(RULE_FILES) >= 30


def test_every_rule_file_loads_without_problems_and_with_a_mapped_logsource() -> None:
    loaded = load_rules(RULE_FILES)
    assert [str(problem) for problem in loaded.problems] == []
    assert RuleSet(loaded.rules).unmapped == {}
    rule_count = sum(len(_documents(path)) for path in RULE_FILES)
    assert len(loaded.rules) + sum(1 for r in RESULTS if r.correlation) == rule_count


def test_every_tests_file_is_read_and_names_a_rule() -> None:
    assert [str(problem) for problem in run_tests([PACK]).problems] == []
    orphans = [
        path
        for path in PACK.rglob("*.tests.yml")
        if not path.with_name(path.name.replace(".tests.yml", ".yml")).is_file()
    ]
    assert orphans == []


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.stem)
def test_rule_metadata_follows_the_pack_conventions(path: Path) -> None:
    for document in _documents(path):
        assert uuid.UUID(document["id"]).version == 4
        assert document["author"] == "Puffin"
        assert document["description"].strip()
        assert document["level"] in ("informational", "low", "medium", "high", "critical")
        tags = document.get("tags") or []
        assert any(tag.removeprefix("attack.") in TACTICS for tag in tags), tags
        assert any(re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", tag) for tag in tags), tags
    assert rule_tests_path(path) is not None, f"{path.name} has no tests file beside it"


def test_rule_ids_and_names_are_unique_across_the_pack() -> None:
    documents = [doc for path in RULE_FILES for doc in _documents(path)]
    ids = [doc["id"] for doc in documents]
    names = [doc["name"] for doc in documents if "name" in doc]
    assert len(ids) == len(set(ids))
    assert len(names) == len(set(names))


def _lines(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [value["line"]] if isinstance(value.get("line"), str) else []
        return found + [line for item in value.values() for line in _lines(item)]
    if isinstance(value, list):
        return [line for item in value for line in _lines(item)]
    return []


def test_every_test_line_is_understood_by_a_decoder() -> None:
    """A negative case on a line nothing can decode would pass for the wrong reason."""
    from puffin.ingest.decoders import Decoders

    decoders = Decoders()
    lines = [line for path in PACK.rglob("*.tests.yml") for line in _lines(_documents(path))]
    assert len(lines) > 100
    assert [line for line in lines if not decoders.decode(line)["decoder"]] == []


@pytest.mark.parametrize("result", RESULTS, ids=_label)
def test_builtin_rule_passes_its_tests(result: RuleTestResult) -> None:
    assert result.positives >= 1, f"{result.title}: no positive case in {result.tests_file}"
    assert result.negatives >= 1, f"{result.title}: no negative case in {result.tests_file}"
    assert not result.failures, "\n".join(str(failure) for failure in result.failures)


# The runner itself, on small packs written here.

RULE = """
title: Root login over SSH (test)
id: 0d6c5a1e-3f7b-4c0e-9a57-6f1d2b3c4d5e
name: test_root_login
author: Puffin
logsource: {product: linux, service: sshd}
detection:
  selection: {action: login, status: success, user: root}
  condition: selection
level: high
"""
CORRELATION = """
title: Failed login (test)
id: 1e7d6b2f-4a8c-4d1f-8b68-7a2e3c4d5e6f
name: test_failed
author: Puffin
logsource: {product: linux, service: sshd}
detection:
  selection: {action: login, status: failure}
  condition: selection
level: informational
---
title: Three failures (test)
id: 2f8e7c3a-5b9d-4e2a-9c79-8b3f4d5e6f70
author: Puffin
correlation:
  type: event_count
  rules: [test_failed]
  group-by: [src_ip]
  timespan: 1m
  condition: {gte: 3}
level: medium
"""
ROOT = "Jan  5 10:00:00 h sshd[1]: Accepted password for root from 192.0.2.1 port 5000 ssh2"
ALICE = "Jan  5 10:00:00 h sshd[1]: Accepted password for alice from 192.0.2.1 port 5000 ssh2"
FAILED = "Jan  5 10:00:00 h sshd[1]: Failed password for bob from 192.0.2.7 port 5000 ssh2"


def _pack(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text).lstrip(), "utf-8")
    return tmp_path


def _one(tmp_path: Path, tests: str, rule: str = RULE) -> RuleTestResult:
    report = run_tests([_pack(tmp_path, {"rule.yml": rule, "rule.tests.yml": tests})])
    assert report.problems == []
    return report.results[-1]


def test_runner_passes_a_rule_whose_cases_hold(tmp_path: Path) -> None:
    result = _one(tmp_path, f"positive:\n  - line: '{ROOT}'\nnegative:\n  - line: '{ALICE}'\n")
    assert (result.status, result.positives, result.negatives) == ("passed", 1, 1)


def test_runner_reports_each_failing_case_with_its_index_and_what_happened(
    tmp_path: Path,
) -> None:
    tests = f"""
    positive:
      - line: '{ROOT}'
      - name: alice is not root
        line: '{ALICE}'
    negative:
      - line: '{ROOT}'
    """
    result = _one(tmp_path, tests)
    assert not result.passed
    assert [(f.kind, f.index, f.name) for f in result.failures] == [
        ("positive", 1, "alice is not root"),
        ("negative", 0, ""),
    ]
    assert "did not fire" in result.failures[0].reason
    assert "'user': 'alice'" not in result.failures[0].reason  # the shape, not the whole event
    assert "'decoder': 'sshd'" in result.failures[0].reason
    assert "fired" in result.failures[1].reason
    assert "root" in result.failures[1].reason


def test_runner_accepts_events_and_requires_both_sections(tmp_path: Path) -> None:
    event = {"program": "sshd", "decoder": "sshd", "action": "login"}
    tests = yaml.safe_dump(
        {"positive": [{"event": {**event, "status": "success", "user": "root"}}]}
    )
    result = _one(tmp_path, tests)
    assert result.status == "failed"
    assert [(f.kind, f.reason.split(":")[0]) for f in result.failures] == [
        ("negative", "no negative case")
    ]


def test_runner_runs_correlation_sequences_with_a_fresh_state_per_case(tmp_path: Path) -> None:
    tests = f"""
    rule: Three failures (test)
    positive:
      - sequence:
          - {{line: '{FAILED}', repeat: 3, every: 10}}
    negative:
      - sequence:
          - {{line: '{FAILED}', repeat: 2, every: 10}}
      - sequence:
          - {{line: '{FAILED}', repeat: 3, every: 40}}
    ---
    rule: test_failed
    positive: [{{line: '{FAILED}'}}]
    negative: [{{line: '{ALICE}'}}]
    """
    report = run_tests([_pack(tmp_path, {"c.yml": CORRELATION, "c.tests.yml": tests})])
    statuses = {result.title: (result.status, result.correlation) for result in report.results}
    assert statuses == {
        "Failed login (test)": ("passed", False),
        "Three failures (test)": ("passed", True),
    }


def test_runner_fails_a_correlation_that_does_not_reach_its_threshold(tmp_path: Path) -> None:
    tests = f"positive:\n  - sequence:\n      - {{line: '{FAILED}', repeat: 2}}\nnegative: []\n"
    report = run_tests([_pack(tmp_path, {"c.yml": CORRELATION, "c.tests.yml": tests})])
    correlation = next(result for result in report.results if result.correlation)
    assert correlation.failures[0].kind == "positive"
    assert "2 x ['Failed login (test)']" in correlation.failures[0].reason


def test_runner_lists_rules_without_tests_and_bad_tests_files(tmp_path: Path) -> None:
    _pack(tmp_path, {"a.yml": RULE, "b.yml": CORRELATION, "b.tests.yml": "rule: nope\n"})
    (tmp_path / "c.yml").write_text(RULE.replace("0d6c5a1e", "0d6c5a1f"), "utf-8")
    (tmp_path / "c.tests.yml").write_text("positive: [\n", "utf-8")
    report = run_tests([tmp_path])
    assert not report.passed
    assert {result.status for result in report.results} == {"untested"}
    reasons = sorted((Path(p.path).name, p.reason.split(":")[0]) for p in report.problems)
    assert reasons == [
        ("b.tests.yml", "no rule 'nope' in the rule file"),
        ("c.tests.yml", "not valid YAML"),
    ]


def test_runner_reports_a_case_without_line_event_or_sequence(tmp_path: Path) -> None:
    result = _one(tmp_path, f"positive:\n  - lines: '{ROOT}'\nnegative:\n  - line: '{ALICE}'\n")
    assert result.failures[0].kind == "positive"
    assert "needs `line`" in result.failures[0].reason
