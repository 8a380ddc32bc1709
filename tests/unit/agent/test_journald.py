"""The journald collector reads journalctl's JSON, saves the cursor with the events, resumes
after it, and reports a missing journalctl, a refused cursor or a dying journalctl once."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from puffin.agent.journald import JournaldCollector, entry_event
from puffin.agent.outbox import Outbox

FAKE_JOURNALCTL = """#!{python}
import json, os, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_JOURNAL_ARGS"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_JOURNAL_WARN"):
    print(os.environ["FAKE_JOURNAL_WARN"], file=sys.stderr, flush=True)
with open(os.environ["FAKE_JOURNAL"]) as recorded:
    entries = [json.loads(line) for line in recorded if line.strip()]
after = [a.split("=", 1)[1] for a in args if a.startswith("--after-cursor=")]
if after:
    cursors = [entry["__CURSOR"] for entry in entries]
    if after[0] not in cursors:
        print("Failed to seek to cursor: Invalid argument", file=sys.stderr)
        sys.exit(1)
    entries = entries[cursors.index(after[0]) + 1:]
for entry in entries:
    print(json.dumps(entry), flush=True)
time.sleep(float(os.environ.get("FAKE_JOURNAL_LINGER", "30")))
"""


def _entry(number: int, message: str, **fields: object) -> dict[str, object]:
    return {
        "__CURSOR": f"s=feed;i={number:x};b=cafe;m={number:x};t=60a;x=1",
        "__REALTIME_TIMESTAMP": str(1_700_000_000_000_000 + number * 1_000_000),
        "_HOSTNAME": "web-01",
        "SYSLOG_IDENTIFIER": "sshd",
        "_PID": "812",
        "_SYSTEMD_UNIT": "ssh.service",
        "PRIORITY": "6",
        "_TRANSPORT": "syslog",
        "MESSAGE": message,
        **fields,
    }


@pytest.fixture
def fake_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake journalctl first on PATH, replaying the entries in the returned file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "journalctl"
    script.write_text(FAKE_JOURNALCTL.format(python=sys.executable))
    script.chmod(0o755)
    journal = tmp_path / "journal.jsonl"
    journal.write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_JOURNAL", str(journal))
    monkeypatch.setenv("FAKE_JOURNAL_ARGS", str(tmp_path / "args.jsonl"))
    return journal


def _record(journal: Path, *entries: dict[str, object]) -> None:
    with journal.open("a") as handle:
        for entry in entries:
            handle.write(json.dumps(entry) + "\n")


def _calls(journal: Path) -> list[list[str]]:
    lines = (journal.parent / "args.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _collect_until(collector, outbox: Outbox, wanted: int, now: float = 0.0) -> list[dict]:
    """Call collect until `wanted` events were written (journalctl runs concurrently)."""
    written = 0
    deadline = time.monotonic() + 15
    while written < wanted and time.monotonic() < deadline:
        written += collector.collect(outbox, now)
        time.sleep(0.05)
    batch = outbox.next_batch(1000)
    return batch.events if batch else []


def test_entries_become_syslog_like_events_and_the_cursor_is_saved(fake_journal, tmp_path):
    first, second = _entry(1, "Accepted publickey for alice"), _entry(2, "session closed")
    _record(fake_journal, first, second)
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({"units": ["ssh.service"]}, tmp_path)
    events = _collect_until(collector, outbox, 2)
    collector.close()

    assert [e["message"] for e in events] == ["Accepted publickey for alice", "session closed"]
    event = events[0]
    assert (event["module"], event["unit"], event["program"]) == ("journald", "ssh.service", "sshd")
    assert (event["pid"], event["hostname"], event["priority"]) == (812, "web-01", 6)
    assert event["timestamp"] == "2023-11-14T22:13:21Z"
    assert event["full_log"] == "Nov 14 22:13:21 web-01 sshd[812]: Accepted publickey for alice"
    assert outbox.position("journald") == second["__CURSOR"]
    assert _calls(fake_journal)[0][-2:] == ["--since=now", "--unit=ssh.service"]


def test_a_restart_resumes_after_the_saved_cursor(fake_journal, tmp_path):
    _record(fake_journal, _entry(1, "one"), _entry(2, "two"))
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({}, tmp_path)
    _collect_until(collector, outbox, 2)
    collector.close()
    outbox.acknowledge(outbox.next_batch())

    _record(fake_journal, _entry(3, "three"))
    restarted = JournaldCollector.from_config({}, tmp_path)
    events = _collect_until(restarted, outbox, 1)
    restarted.close()
    assert [e["message"] for e in events] == ["three"]
    assert f"--after-cursor={_entry(2, '')['__CURSOR']}" in _calls(fake_journal)[1]


def test_a_refused_cursor_is_reported_and_collection_goes_on_from_now(fake_journal, tmp_path):
    _record(fake_journal, _entry(1, "after the damage"))
    outbox = Outbox(tmp_path / "o.db")
    outbox.add([], {"journald": "not-a-cursor"})
    collector = JournaldCollector.from_config({}, tmp_path)
    events = _collect_until(collector, outbox, 2)
    collector.close()
    assert events[0]["title"] == "saved journal cursor refused; following from now"
    assert "Failed to seek to cursor" in events[0]["full_log"]
    assert events[1]["message"] == "after the damage"
    assert "--since=now" in _calls(fake_journal)[1]


def test_missing_journalctl_is_said_once_and_the_collector_stays_idle(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({}, tmp_path)
    assert collector.collect(outbox, 0.0) == 1
    assert collector.collect(outbox, 100.0) == 0
    (notice,) = outbox.next_batch().events
    assert notice["title"] == "journalctl not found"


def test_a_journalctl_that_keeps_dying_is_reported_once_and_restarted_with_back_off(
    fake_journal, tmp_path, monkeypatch
):
    monkeypatch.setenv("FAKE_JOURNAL_LINGER", "0")
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({}, tmp_path)
    for now in [0.0, 1.0, 6.0, 7.0, 16.0]:  # back-off: 5 s, then 10 s
        collector.collect(outbox, now)
        deadline = time.monotonic() + 10
        while collector._process is not None and time.monotonic() < deadline:
            time.sleep(0.05)
            collector.collect(outbox, now)
    collector.close()
    notices = outbox.next_batch().events
    assert [n["title"] for n in notices] == ["journalctl stopped (exit code 0)"]
    assert len(_calls(fake_journal)) == 3  # at 0, 6 and 16: not at 1 or 7


def test_a_permission_warning_on_stderr_becomes_one_event(fake_journal, tmp_path, monkeypatch):
    warning = "No journal files were opened due to insufficient permissions."
    monkeypatch.setenv("FAKE_JOURNAL_WARN", warning)
    _record(fake_journal, _entry(1, "visible"))
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({}, tmp_path)
    events = _collect_until(collector, outbox, 2)
    collector.close()
    titles = [e.get("title") for e in events]
    assert titles.count("journalctl reported a problem") == 1
    assert any(warning in e["full_log"] for e in events)


def test_configuration_cannot_smuggle_options_into_journalctl(tmp_path):
    collector = JournaldCollector.from_config(
        {"units": ["ssh.service", "--output=cat"], "matches": ["_UID=0", "--file=/etc/shadow"]},
        tmp_path,
    )
    argv = collector.argv(None)
    assert "--file=/etc/shadow" not in argv
    assert "--unit=ssh.service" in argv
    assert "_UID=0" in argv
    assert argv.count("--output=json") == 1
    assert not any(arg.startswith("--output=cat") for arg in argv)
    outbox = Outbox(tmp_path / "o.db")
    collector.collect(outbox, 0.0)
    collector.close()
    titles = [e.get("title") for e in outbox.next_batch().events]
    assert titles.count("configuration entry ignored") == 2


def test_binary_and_oversized_fields_are_handled():
    event = entry_event(
        {
            "MESSAGE": list(b"caf\xc3\xa9 \x00ok"),
            "_COMM": "cron",
            "_HOSTNAME": "db",
            "__REALTIME_TIMESTAMP": "1700000000000000",
            "_EXE": None,  # journalctl writes fields over 4 KiB as null
        }
    )
    assert event["message"] == "café \x00ok"
    assert event["program"] == "cron"
    assert "pid" not in event
    assert "exe" not in event
    assert event["full_log"] == "Nov 14 22:13:20 db cron: café \x00ok"


@pytest.mark.skipif(shutil.which("journalctl") is None, reason="no journalctl on this machine")
def test_the_real_journalctl_accepts_our_arguments_and_refuses_a_damaged_cursor(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    collector = JournaldCollector.from_config({"units": ["ssh.service"]}, tmp_path)
    for _ in range(20):
        collector.collect(outbox, 0.0)
        time.sleep(0.05)
    still_running = collector.running
    collector.close()
    batch = outbox.next_batch()
    stopped = [e for e in (batch.events if batch else []) if "stopped" in e.get("title", "")]
    assert still_running, stopped
    assert not stopped

    damaged = Outbox(tmp_path / "damaged.db")
    damaged.add([], {"journald": "s=garbage"})
    collector = JournaldCollector.from_config({}, tmp_path)
    titles: list[str] = []
    deadline = time.monotonic() + 10
    while "saved journal cursor refused; following from now" not in titles:
        assert time.monotonic() < deadline, titles
        collector.collect(damaged, 0.0)
        batch = damaged.next_batch()
        titles = [e.get("title", "") for e in (batch.events if batch else [])]
        time.sleep(0.05)
    collector.collect(damaged, 0.0)  # restarts from now
    assert collector.running
    collector.close()
