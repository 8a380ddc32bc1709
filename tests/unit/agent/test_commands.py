"""Periodic commands report their output when it changes, time out cleanly, and are never
taken from configuration the server sent."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil

from puffin.agent.commands import CommandsCollector
from puffin.agent.outbox import Outbox


def _command(name: str, code: str, **options: object) -> dict[str, object]:
    return {"name": name, "argv": [sys.executable, "-c", code], **options}


def _finish(collector: CommandsCollector, outbox: Outbox, now: float) -> int:
    """Run one turn at `now`, then keep calling until the commands it started are done."""
    written = collector.collect(outbox, now)
    deadline = time.monotonic() + 20
    while collector.running and time.monotonic() < deadline:
        time.sleep(0.02)
        written += collector.collect(outbox, now)
    return written


def _events(outbox: Outbox) -> list[dict]:
    batch = outbox.next_batch(1000)
    if batch is None:
        return []
    outbox.acknowledge(batch)
    return batch.events


def test_output_is_sent_when_it_changes_and_not_when_it_stays_the_same(tmp_path):
    state = tmp_path / "state.txt"
    state.write_text("LISTEN 0.0.0.0:22\n")
    reader = f"import sys; sys.stdout.write(open({str(state)!r}).read())"
    config = {"commands": [_command("listening", reader, interval=60)]}
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=True)

    assert _finish(collector, outbox, 0.0) == 1
    (event,) = _events(outbox)
    assert (event["module"], event["command_name"]) == ("command", "listening")
    assert (event["output"], event["exit_code"], event["timed_out"]) == (
        "LISTEN 0.0.0.0:22\n",
        0,
        False,
    )
    assert event["full_log"] == "command 'listening' exited 0:\nLISTEN 0.0.0.0:22\n"

    assert _finish(collector, outbox, 30.0) == 0  # not due yet: nothing ran
    assert _finish(collector, outbox, 60.0) == 0  # ran; same output
    state.write_text("LISTEN 0.0.0.0:22\nLISTEN 0.0.0.0:4444\n")
    assert _finish(collector, outbox, 120.0) == 1
    assert _events(outbox)[0]["output"].endswith("4444\n")
    collector.close()

    restarted = CommandsCollector.from_config(config, tmp_path, local=True)
    assert _finish(restarted, outbox, 0.0) == 0  # the last result survived the restart


def test_always_sends_every_run_and_exit_codes_and_stderr_are_kept(tmp_path):
    failing = "import sys; sys.stderr.write('denied\\n'); sys.exit(3)"
    config = {"commands": [_command("check", failing, interval=10, always=True)]}
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=True)
    assert _finish(collector, outbox, 0.0) == 1
    assert _finish(collector, outbox, 10.0) == 1
    first, second = _events(outbox)
    assert (first["exit_code"], first["output"]) == (3, "denied\n")
    assert second["output"] == "denied\n"


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_command_past_its_timeout_is_killed_with_its_children(tmp_path):
    child_pid = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"print('started', flush=True); open({str(child_pid)!r}, 'w').write(str(child.pid)); "
        "time.sleep(60)"
    )
    config = {"commands": [_command("slow", code, timeout=5)]}
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=True)
    collector.collect(outbox, 0.0)
    deadline = time.monotonic() + 20
    while not child_pid.exists() or not child_pid.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert collector.collect(outbox, 1.0) == 0  # still within its 5 s
    assert collector.collect(outbox, 6.0) == 1  # past them: killed and reported
    (event,) = _events(outbox)
    assert event["timed_out"] is True
    assert event["exit_code"] is None
    assert event["output"] == "started\n"
    pid = int(child_pid.read_text())
    try:
        while not _gone(pid):
            assert time.monotonic() < deadline, "the command's child outlived the timeout"
            time.sleep(0.05)
    finally:
        if not _gone(pid):
            psutil.Process(pid).kill()  # do not leave it behind when the test fails


def test_a_program_that_does_not_exist_is_reported(tmp_path):
    config = {"commands": [{"name": "gone", "argv": ["/nonexistent/tool", "-x"]}]}
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=True)
    assert collector.collect(outbox, 0.0) == 1
    (event,) = _events(outbox)
    assert event["exit_code"] is None
    assert "FileNotFoundError" in event["error"]
    assert "did not start" in event["full_log"]


def test_commands_from_the_server_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "pwned"
    config = {
        "commands": [
            _command("innocent", f"open({str(marker)!r}, 'w')", interval=1),
            {"name": "shell", "argv": ["sh", "-c", f"touch {marker}"]},
        ]
    }
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=False)
    for now in (0.0, 5.0, 10.0):
        _finish(collector, outbox, now)
    (notice,) = _events(outbox)
    assert notice["title"] == "Server-supplied commands refused"
    assert "innocent, shell" in notice["full_log"]
    assert collector.commands == []
    assert not marker.exists()


def test_bad_entries_are_reported_and_the_good_ones_kept(tmp_path):
    config = {
        "commands": [
            {"name": "no-argv"},
            {"name": "text-argv", "argv": "ss -ltn"},
            _command("ok", "print(1)"),
            _command("ok", "print(2)"),
            {"name": "fast", "argv": ["true"], "interval": 0},
        ]
    }
    collector = CommandsCollector.from_config(config, tmp_path, local=True)
    assert [spec.name for spec in collector.commands] == ["ok"]
    outbox = Outbox(tmp_path / "o.db")
    _finish(collector, outbox, 0.0)
    events = _events(outbox)
    problems = [e["full_log"] for e in events if e["title"] == "configuration entry ignored"]
    assert len(problems) == 4
    assert any("configured twice" in p for p in problems)
    assert [e["output"] for e in events if "output" in e] == ["1\n"]


def test_large_output_is_cut_and_marked(tmp_path: Path):
    config = {"commands": [_command("big", "print('x' * 200_000)")]}
    outbox = Outbox(tmp_path / "o.db")
    collector = CommandsCollector.from_config(config, tmp_path, local=True)
    _finish(collector, outbox, 0.0)
    (event,) = _events(outbox)
    assert event["truncated"] is True
    assert len(event["output"]) == 60 * 1024
