"""The fast paths of `puffin hunt` give the same answers as the plain ones.

Rules parsed in worker processes, matchers compiled on first use, small inputs hunted in
one process and large ones in forked workers, JSON lines parsed from bytes: each is
checked against the straightforward way on real SigmaHQ rules and regression files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile
from pathlib import Path

import pytest
from tests.conftest import shared_data

from puffin.detection import hunt as hunt_module
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.hunt import (
    HuntMatch,
    estimated_records,
    find_sources,
    read_records,
    run_hunt,
)
from puffin.detection.loader import RuleCache, load_rules

PUFFIN_BACKENDS = ("sqlite",)  # files only: no state database
SIGMA = shared_data() / "sigma"
PROCESS_CREATION = SIGMA / "rules" / "windows" / "process_creation"
REGRESSION = SIGMA / "regression_data" / "rules" / "windows" / "process_creation"

SSH_ROOT = """
title: Root login over SSH (test)
id: 0c8d3f2e-6a55-4d6f-9f58-7a1e2b3c4d5e
level: high
logsource: {product: linux, service: sshd}
detection:
  selection:
    program: sshd
    user: root
  condition: selection
"""


@pytest.fixture
def rule_files(tmp_path: Path) -> Path:
    """A copy of 80 real SigmaHQ process-creation rules (enough to parse in workers)."""
    found = sorted(PROCESS_CREATION.glob("*.yml"))[:80]
    if len(found) < 80:
        pytest.skip("../shared/data/sigma is absent")
    folder = tmp_path / "rules"
    folder.mkdir()
    for path in found:
        shutil.copy(path, folder / path.name)
    return folder


def _summary(loaded) -> list[tuple[str, str, str]]:
    return [(rule.id, rule.path, rule.source) for rule in loaded.rules]


def test_rules_parsed_in_workers_equal_rules_parsed_here_and_fill_the_cache(
    rule_files: Path, tmp_path: Path
) -> None:
    here = load_rules([rule_files], jobs=1)
    cache = RuleCache(tmp_path / "cache.sqlite")
    in_workers = load_rules([rule_files], jobs=2, cache=cache)
    cache.close()
    assert len(here.rules) >= 70
    assert _summary(in_workers) == _summary(here)
    assert [str(p) for p in in_workers.problems] == [str(p) for p in here.problems]
    assert in_workers.cached == 0

    cache = RuleCache(tmp_path / "cache.sqlite")
    again = load_rules([rule_files], jobs=2, cache=cache)
    cache.close()
    assert again.cached == again.files == in_workers.files
    assert _summary(again) == _summary(here)


def test_serial_and_forked_hunts_find_the_same_matches(rule_files: Path) -> None:
    evtx = sorted(REGRESSION.rglob("*.evtx"))[:12]
    if len(evtx) < 12:
        pytest.skip("../shared/data/sigma regression data is absent")
    rules = load_rules([rule_files]).rules
    sources = find_sources(evtx)

    def found(jobs: int | None) -> list[HuntMatch]:
        result = run_hunt(sources, rules, jobs=jobs)
        assert result.errors == []
        return sorted(result.matches, key=lambda m: (m.rule_id, m.file, str(m.record_id)))

    serial = found(1)
    assert serial, "the first regression files should match some of these rules"
    assert found(None) == serial  # small input: one process
    assert found(2) == serial  # this process and a forked worker, every field alike
    assert found(3) == serial


def test_workers_started_afresh_find_the_same_matches_as_forked_ones(
    rule_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no fork (macOS, Windows), workers get the rules as rows."""
    evtx = sorted(REGRESSION.rglob("*.evtx"))[:6]
    if len(evtx) < 6:
        pytest.skip("../shared/data/sigma regression data is absent")
    rules = load_rules([rule_files]).rules
    sources = find_sources(evtx)
    forked = run_hunt(sources, rules, jobs=2)
    monkeypatch.setattr(hunt_module.sys, "platform", "darwin")  # read only by run_hunt here
    spawned = run_hunt(sources, rules, jobs=2)
    assert spawned.errors == forked.errors == []
    key = lambda m: (m.rule_id, m.file, str(m.record_id))  # noqa: E731
    assert sorted(spawned.matches, key=key) == sorted(forked.matches, key=key)
    assert spawned.matches


def test_a_json_line_with_bad_utf8_is_still_read_as_json(tmp_path: Path) -> None:
    rules = tmp_path / "ssh.yml"
    rules.write_text(SSH_ROOT)
    good = json.dumps({"program": "sshd", "user": "root", "note": "ok"}).encode()
    bad = good.replace(b'"ok"', b'"\xff\xfe"')  # not UTF-8
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\n" + good + b"\n  " + bad + b"\r\n")
    result = run_hunt(find_sources([log]), load_rules([rules]).rules, jobs=1)
    assert result.records == 2
    assert [m.record_id for m in result.matches] == [2, 3]
    assert result.matches[1].matched == {"program": "sshd", "user": "root"}


def test_a_matcher_that_cannot_compile_is_counted_and_the_others_still_match(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "ssh.yml"
    rules.write_text(SSH_ROOT)
    [good] = load_rules([rules]).rules
    broken = dataclasses.replace(good, id="broken-rule", source="def match(:\n")
    ruleset = RuleSet([broken, good])
    event = {"program": "sshd", "user": "root"}
    assert [m.rule_id for m in ruleset.evaluate(event)] == [good.id]
    assert ruleset.errors["broken-rule"].count == 1
    assert "SyntaxError" in ruleset.errors["broken-rule"].last
    with pytest.raises(SyntaxError):
        ruleset.compile_all()


EMOJI = """
title: Arrows in a command line (test)
id: 7d6c5b4a-0000-4000-8000-00000000e001
level: low
logsource: {product: test}
detection:
  selection:
    CommandLine|contains: ['→', '★', 'Ⓜ️']
  condition: selection
"""


def test_rules_of_short_non_ascii_literals_are_indexed_and_still_match(tmp_path: Path) -> None:
    rules = tmp_path / "emoji.yml"
    rules.write_text(EMOJI, encoding="utf-8")
    [rule] = load_rules([rules]).rules
    assert rule.literals is not None  # reached through the index, not run for every event
    ruleset = RuleSet([rule])
    product = {"logsource_product": "test"}
    assert ruleset.evaluate({**product, "CommandLine": "cmd /c echo a → b"})
    assert ruleset.evaluate({**product, "CommandLine": "X Ⓜ️ Y"})
    assert not ruleset.evaluate({**product, "CommandLine": "cmd /c echo a -> b"})
    assert not ruleset.evaluate({**product, "Image": "→"})


def test_evtx_records_are_counted_from_chunk_headers(tmp_path: Path) -> None:
    evtx = sorted(REGRESSION.rglob("*.evtx"))[:20]
    if not evtx:
        pytest.skip("../shared/data/sigma regression data is absent")
    for source in find_sources(evtx):
        assert estimated_records(source) == sum(1 for _ in read_records(source.path))
    truncated = tmp_path / "truncated.evtx"
    truncated.write_bytes(evtx[0].read_bytes()[:4100])  # cut inside the first chunk header
    [source] = find_sources([truncated])
    assert estimated_records(source) == 0


def _broken_zip(path: Path, line: str) -> Path:
    """A zip whose first member reads and whose second fails its CRC check part way."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("first.jsonl", (line + "\n") * 4)
        archive.writestr("second.jsonl", (line + "\n") * 4)
    data = bytearray(path.read_bytes())
    second = data.index(b"second.jsonl") + len("second.jsonl")  # its local header's name
    data[data.index(b"sshd", second)] ^= 0x20  # "Sshd": the stored CRC no longer matches
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_file_that_breaks_part_way_is_reported_and_the_others_keep_their_matches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: int
) -> None:
    # Records are matched three at a time here, so batches end inside files and across them.
    monkeypatch.setattr(hunt_module, "RECORD_BATCH", 3)
    rules = tmp_path / "ssh.yml"
    rules.write_text(SSH_ROOT)
    line = json.dumps({"program": "sshd", "user": "root"})
    first = tmp_path / "first.jsonl"
    first.write_text((line + "\n") * 5)
    broken = _broken_zip(tmp_path / "broken.zip", line)
    last = tmp_path / "last.jsonl"
    last.write_text((line + "\n") * 2)
    result = run_hunt(find_sources([first, broken, last]), load_rules([rules]).rules, jobs=jobs)
    [error] = result.errors
    assert error.startswith(f"{broken}: BadZipFile")
    assert "CRC" in error
    found = sorted((Path(match.file).name, match.record_id) for match in result.matches)
    assert found == [("first.jsonl", n) for n in range(1, 6)] + [
        ("last.jsonl", 1),
        ("last.jsonl", 2),
    ]
    assert result.records == 7  # the broken file's four good records are not counted
