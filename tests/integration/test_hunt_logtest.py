"""`puffin hunt` over real EVTX, JSON lines, zipped and syslog files; `puffin logtest`."""

from __future__ import annotations

import json
import shutil
import zipfile

import pytest
from tests.conftest import shared_data
from typer.testing import CliRunner

from puffin.cli.main import build_app

REGRESSION = shared_data() / "sigma" / "regression_data" / "rules" / "windows"
BITSADMIN = "process_creation/proc_creation_win_bitsadmin_download"
RULES = shared_data() / "sigma" / "rules" / "windows" / "process_creation"

ACCEPTED_ROOT = (
    "Nov 22 10:14:03 web1 sshd[811]: Accepted password for root from 203.0.113.5 port 50122 ssh2\n"
)
FAILED_ROOT = ACCEPTED_ROOT.replace("14:03", "14:01").replace("Accepted", "Failed")
ACCEPTED_ALICE = ACCEPTED_ROOT.replace("root", "alice").replace("14:03", "15:00")

SSH_ROOT = """
title: Root login over SSH (test)
id: 0c8d3f2e-6a55-4d6f-9f58-7a1e2b3c4d5e
level: high
logsource: {product: linux, service: sshd}
detection:
  selection:
    program: sshd
    user: root
    status: success
  condition: selection
"""

runner = CliRunner()


def puffin(*args: str, stdin: str | None = None):
    return runner.invoke(build_app(list(args)), list(args), input=stdin)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PUFFIN_CACHE_DIR", str(tmp_path / "cache"))


def _bitsadmin_evtx():
    found = sorted((REGRESSION / BITSADMIN).glob("*.evtx"))
    if not found:
        pytest.skip("../shared/data/sigma regression data is absent")
    return found[0]


def test_hunt_reports_evtx_json_zip_and_syslog_matches_with_their_records(tmp_path, cache):
    evidence = tmp_path / "evidence"
    (evidence / "nested").mkdir(parents=True)
    evtx_file = shutil.copy(_bitsadmin_evtx(), evidence / "nested" / "host1.evtx")
    records = [json.loads(line) for line in _jsonl_of(evtx_file)]
    (evidence / "events.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with zipfile.ZipFile(evidence / "archive.zip", "w") as archive:
        archive.writestr("inner/events.jsonl", "\n" + json.dumps(records[0]) + "\n")
    (evidence / "auth.log").write_text(FAILED_ROOT + ACCEPTED_ROOT)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ssh_root.yml").write_text(SSH_ROOT)
    out = tmp_path / "matches.jsonl"
    result = puffin(
        "hunt",
        str(evidence),
        "--rules",
        str(rules),
        "--rules",
        str(RULES),
        "--jsonl",
        str(out),
        "--jobs",
        "2",
    )
    assert result.exit_code == 0, result.output
    assert "Matches by rule" in result.output
    matches = [json.loads(line) for line in out.read_text().splitlines()]
    for match in matches:
        assert {"rule_id", "rule_title", "level", "file", "record_id", "timestamp"} <= set(match)
    ssh = [m for m in matches if m["rule_title"] == "Root login over SSH (test)"]
    assert [(m["file"].endswith("auth.log"), m["record_id"]) for m in ssh] == [(True, 2)]
    whoami = [m for m in matches if "bitsadmin" in m["rule_title"].lower()]
    from_evtx = [m for m in whoami if m["file"].endswith("host1.evtx")]
    assert from_evtx
    evtx_ids = {r["Event"]["System"]["EventRecordID"] for r in records}
    assert {m["record_id"] for m in from_evtx} <= evtx_ids
    assert all(m["timestamp"] for m in from_evtx)
    from_jsonl = [m for m in whoami if m["file"].endswith("events.jsonl") and "!" not in m["file"]]
    assert len(from_jsonl) == len(from_evtx)
    zipped = [m for m in whoami if "archive.zip!inner/events.jsonl" in m["file"]]
    assert zipped
    assert {m["record_id"] for m in zipped} == {2}


def _jsonl_of(evtx_file):
    import evtx

    for record in evtx.PyEvtxParser(str(evtx_file)).records_json():
        yield record["data"]


def test_hunt_without_rules_uses_the_built_in_pack_and_bad_paths_are_clear(tmp_path, cache):
    log = tmp_path / "auth.log"
    log.write_text(ACCEPTED_ROOT)
    result = puffin("hunt", str(log))
    assert result.exit_code == 0, result.output
    assert "rules" in result.output
    missing = puffin("hunt", str(tmp_path / "nope"))
    assert missing.exit_code == 2
    assert "no such file or folder" in missing.output


def test_hunt_names_broken_rules_and_still_runs_the_others(tmp_path, cache):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ok.yml").write_text(SSH_ROOT)
    (rules / "broken.yml").write_text("title: broken\ndetection:\n  sel: [\n")
    log = tmp_path / "auth.log"
    log.write_text(ACCEPTED_ROOT)
    result = puffin("hunt", str(log), "--rules", str(rules))
    assert result.exit_code == 0, result.output
    assert "broken.yml:4" in result.output
    assert "Root login over SSH (test)" in result.output


def test_logtest_shows_the_decoder_fields_and_matching_rules(tmp_path, cache):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ssh_root.yml").write_text(SSH_ROOT)
    lines = ACCEPTED_ROOT + ACCEPTED_ALICE
    result = puffin("logtest", "--rules", str(rules), stdin=lines)
    assert result.exit_code == 0, result.output
    first, second = result.output.split("event 2")
    assert "decoder: sshd" in first
    assert "src_ip: 203.0.113.5" in first
    assert "Root login over SSH (test)" in first
    assert "Root login over SSH (test)" not in second
    assert "no rule matched" in second
    as_json = puffin("logtest", "--rules", str(rules), "--json", stdin=lines)
    objects = [json.loads(line) for line in as_json.output.splitlines() if line.startswith("{")]
    assert [len(o["matches"]) for o in objects] == [1, 0]
    assert objects[0]["event"]["user"] == "root"
