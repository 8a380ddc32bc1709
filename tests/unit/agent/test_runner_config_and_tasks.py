"""The running agent: the server's configuration applied by hash with the local file added
to it, response actions limited by the local file alone and never aimed at the server, and
tasks, results and timed unblocks kept across restarts."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from puffin.agent import state
from puffin.agent.collectors import Collectors
from puffin.agent.response import Responder
from puffin.agent.runner import SERVER_CONFIG_FILE, Agent, settings_from
from puffin.agent.tasks import INTERRUPTED, TaskJournal
from puffin.protocol.messages import KeepAliveReply, Task, TaskResult

SERVER = "https://192.0.2.10:8443"


class Recorder:
    """Stands in for `subprocess.run` of firewall commands: records them, keeps iptables
    rules (-I adds, -D removes, -C checks) and succeeds."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.rules: set[tuple[str, ...]] = set()

    def __call__(self, argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        assert "shell" not in options
        self.calls.append(list(argv))
        code = 0
        if argv[0] == "iptables":
            rule = tuple(argv[4:])
            if argv[3] == "-C":
                code = 0 if rule in self.rules else 1
            else:
                (self.rules.add if argv[3] == "-I" else self.rules.discard)(rule)
        return subprocess.CompletedProcess(argv, code, "", "")


def _agent(state_dir: Path, local: dict[str, Any] | None = None) -> Agent:
    if not (state_dir / state.ENROLMENT_FILE).exists():
        enrolment = state.Enrolment(
            server=SERVER,
            agent_id=str(uuid.uuid4()),
            organisation_id=str(uuid.uuid4()),
            credential="c" * 40,
            fingerprint="AA",
            name="web-01",
        )
        state.save(state_dir, enrolment, "not used without a connection")
    return Agent.open(state_dir, settings_from([], local=local or {}))


def _reply(config_hash: str, config: dict[str, Any] | None, *tasks: Task) -> KeepAliveReply:
    return KeepAliveReply(config_hash=config_hash, config=config, tasks=list(tasks))


def _task(action: str, **parameters: Any) -> Task:
    return Task(id=uuid.uuid4(), action=action, parameters=parameters)


def test_the_local_file_adds_to_the_server_configuration(tmp_path):
    group_dir, local_dir = tmp_path / "etc", tmp_path / "srv"
    group_dir.mkdir()
    local_dir.mkdir()
    local = {"logs": [str(tmp_path / "local.log")], "fim": {"paths": [str(local_dir)]}}
    agent = _agent(tmp_path / "state", local)
    collectors = Collectors(agent.state_dir)
    try:
        server_config = {
            "logs": [str(tmp_path / "group.log::json")],
            "fim": {"paths": [str(group_dir)], "frequency_seconds": 600},
        }
        agent.apply(_reply("h1", server_config), collectors, agent.responder())
        fim = collectors.status()["fim"]["state"]
        assert fim["paths"] == [str(group_dir), str(local_dir)]  # joined, not replaced
        assert [(s.pattern, s.format) for s in agent.sources] == [
            (str(tmp_path / "group.log"), "json"),
            (str(tmp_path / "local.log"), "syslog"),
        ]
    finally:
        collectors.close()
        agent.close()


def test_configuration_is_applied_by_hash_and_kept_for_a_restart(tmp_path):
    agent = _agent(tmp_path)
    collectors = Collectors(tmp_path)
    responder = agent.responder()
    agent.apply(_reply("h1", {"logs": ["/var/log/one.log"]}), collectors, responder)
    assert agent.config_hash == "h1"
    agent.apply(_reply("h1", None), collectors, responder)  # unchanged: nothing sent
    assert [s.pattern for s in agent.sources] == ["/var/log/one.log"]
    agent.close()

    restarted = _agent(tmp_path)  # applies the saved configuration before the server answers
    assert restarted.config_hash == "h1"
    assert restarted.server_config == {"logs": ["/var/log/one.log"]}
    restarted.apply(_reply("h2", {"logs": ["/var/log/two.log"]}), collectors, responder)
    assert [s.pattern for s in restarted.sources] == ["/var/log/two.log"]
    assert state.load_json(tmp_path / SERVER_CONFIG_FILE)["hash"] == "h2"
    restarted.close()


def test_the_server_cannot_widen_the_allowed_actions(tmp_path):
    agent = _agent(tmp_path)  # no local `response` section: block-ip only
    responder = agent.responder()
    assert sorted(responder.allowed) == ["block-ip", "unblock-ip"]
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        widen = {"response": {"allowed_actions": ["kill-process"]}}
        kill = _task("kill-process", pid=victim.pid)
        agent.apply(_reply("h1", widen), Collectors(tmp_path), responder, None)
        agent.journal.receive([kill])
        agent.run_tasks(responder)
        (result,) = agent.journal.results()
        assert not result.ok
        assert "not allowed" in result.result["error"]
        assert victim.poll() is None  # still running
        assert "kill-process" not in agent.responder().allowed
    finally:
        victim.kill()
        victim.wait()
        agent.close()


def test_the_server_address_is_never_blocked(tmp_path):
    agent = _agent(tmp_path)
    recorder = Recorder()
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=recorder, firewall="nft")
    agent.journal.receive([_task("block-ip", ip="192.0.2.10"), _task("block_ip", ip="192.0.2.99")])
    agent.run_tasks(responder)  # adds the server's addresses to what it protects
    server, other = agent.journal.results()
    assert not server.ok
    assert "protected" in server.result["error"]
    assert other.ok
    assert all("192.0.2.10" not in " ".join(call) for call in recorder.calls)
    assert "192.0.2.10" in {str(a) for a in agent.responder().protected}
    agent.close()


def test_results_and_timed_unblocks_survive_a_restart(tmp_path):
    recorder = Recorder()
    agent = _agent(tmp_path)
    block = _task("block-ip", ip="198.51.100.7", timeout=60)
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=recorder, firewall="iptables")
    agent.apply(_reply("", None, block), Collectors(tmp_path), responder)
    assert recorder.rules == {("INPUT", "-s", "198.51.100.7", "-j", "DROP")}
    agent.close()  # stopped before any keep-alive reported the result

    restarted = _agent(tmp_path)
    (kept,) = restarted.journal.results()
    assert (kept.task_id, kept.ok) == (block.id, True)
    restarted.journal.reported([kept])
    later = Responder(tmp_path, allowed={"block-ip"}, runner=recorder, firewall="iptables")
    (lifted,) = later.expire(time.time() + 61)  # the block's end was kept on disk
    assert lifted.task_id == block.id
    assert lifted.result["action"] == "unblock-ip"
    assert recorder.rules == set()  # the rule added before the restart is gone
    restarted.close()


def test_a_task_interrupted_by_a_crash_is_reported_failed_and_not_run_again(tmp_path):
    journal = TaskJournal(tmp_path / "tasks.db")
    kill = _task("kill-process", pid=4242)
    journal.receive([kill, kill])  # a task handed over twice is kept once
    (waiting,) = journal.waiting()
    journal.start(waiting)
    journal.close()  # the agent died while the action ran

    reopened = TaskJournal(tmp_path / "tasks.db")
    assert reopened.waiting() == []
    assert reopened.results() == [
        TaskResult(task_id=kill.id, ok=False, result={"error": INTERRUPTED})
    ]
    reopened.close()


@pytest.mark.parametrize("section", [{"allowed_actions": ["shell"]}, {"allowed_actions": "x"}])
def test_a_bad_local_response_section_is_refused(section):
    with pytest.raises(ValueError, match="allowed_actions"):
        settings_from([], local={"response": section})
