"""The Windows service wrapper: its own options taken out of the command line, and the
runner it wraps started on a real enrolled agent (collecting a real file) and stopped."""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from puffin.agent import state
from puffin.agent.windows import service
from puffin.agent.windows.service import (
    AgentRunner,
    ServiceOptions,
    command_of,
    default_state_dir,
    parse_arguments,
)
from puffin.core.tls import generate_self_signed


def test_our_options_are_taken_out_and_the_rest_left_for_pywin32(monkeypatch):
    monkeypatch.setenv("ProgramData", r"C:\ProgramData")
    options, rest = parse_arguments(
        ["--startup", "auto", "--state-dir", r"D:\Puffin\state",
         r"--config=D:\Puffin\agent.json", "install"]
    )  # fmt: skip
    assert options == ServiceOptions(Path(r"D:\Puffin\state"), Path(r"D:\Puffin\agent.json"))
    assert rest == ["--startup", "auto", "install"]
    assert command_of(rest) == "install"
    assert command_of(["--wait", "10", "stop"]) == "stop"
    assert command_of(["--startup", "delayed"]) == ""

    options, rest = parse_arguments(["start"])
    assert options == ServiceOptions(default_state_dir(), None)
    assert rest == ["start"]
    assert default_state_dir({"ProgramData": r"E:\Data"}) == Path(r"E:\Data") / "Puffin" / "Agent"


@pytest.mark.parametrize("argv", [["--state-dir"], ["--config", "--startup"], ["--config="]])
def test_an_option_without_a_value_is_a_clear_error(argv, capsys):
    with pytest.raises(ValueError, match="needs a value"):
        parse_arguments(argv)
    assert service.main(argv) == 2
    assert "needs a value" in capsys.readouterr().err


@pytest.mark.skipif(sys.platform == "win32", reason="checks the non-Windows refusal")
def test_on_linux_the_module_imports_and_the_command_says_it_needs_windows(capsys):
    assert service.PuffinAgentService is None
    assert service.main(["install"]) == 1
    assert "needs Windows and pywin32" in capsys.readouterr().err


def _enrolled(state_dir: Path, tmp_path: Path) -> None:
    """An enrolment with a real certificate, for a server address where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    paths = generate_self_signed(tmp_path / "server.crt", tmp_path / "server.key")
    pem = paths.cert_file.read_text()
    enrolment = state.Enrolment(
        server=f"https://127.0.0.1:{port}", agent_id="00000000-0000-0000-0000-0000000000a1",
        organisation_id="00000000-0000-0000-0000-0000000000b2", credential="pfa_test",
        fingerprint=state.fingerprint_of_pem(pem), name="WS01",
    )  # fmt: skip
    state.save(state_dir, enrolment, pem)


def _stored(state_dir: Path) -> list[str]:
    with sqlite3.connect(state_dir / "outbox.db") as db:
        return [
            json.loads(body).get("full_log", "") for (body,) in db.execute("SELECT body FROM event")
        ]


def test_the_runner_collects_until_stopped_and_closes_the_agent(tmp_path):
    state_dir, log = tmp_path / "state", tmp_path / "app.log"
    _enrolled(state_dir, tmp_path)
    log.write_text("")
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"logs": [{"path": str(log), "format": "plain"}],
                                  "agent": {"poll_seconds": 0.05}}))  # fmt: skip
    runner = AgentRunner()
    runner.start(ServiceOptions(state_dir, config))
    assert runner.running
    with log.open("a") as handle:
        handle.write("first line\nsecond line\n")
    deadline = time.monotonic() + 30
    while len(_stored(state_dir)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.stop(timeout=30), "the agent did not stop"
    assert not runner.running
    assert runner.error is None
    assert [line for line in _stored(state_dir) if "line" in line] == ["first line", "second line"]
    # Stopped means closed: the outbox can be opened again and a second start works.
    runner.start(ServiceOptions(state_dir, config))
    assert runner.stop(timeout=30)


def test_the_runner_refuses_to_start_without_an_enrolment_or_with_a_bad_file(tmp_path):
    with pytest.raises(OSError, match="not enrolled"):
        AgentRunner().start(ServiceOptions(tmp_path / "empty", None))
    bad = tmp_path / "agent.json"
    bad.write_text('{"agent": {"poll_seconds": -1}}')
    with pytest.raises(ValueError, match=r"agent\.json: agent\.poll_seconds"):
        AgentRunner().start(ServiceOptions(tmp_path / "empty", bad))
