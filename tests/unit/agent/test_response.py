"""Active response runs only allow-listed actions with checked parameters: firewall blocks
that lift themselves (after a restart too) and killing a real process, never anything else."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
import pytest

from puffin.agent.response import Responder
from puffin.protocol.wire import Task

ALL = {"block-ip", "unblock-ip", "kill-process"}


class FakeRunner:
    """Records each argument list and answers with the return code `answer` chooses."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[list[str]] = []
        self.inputs: list[str | None] = []
        self.answer = answer or (lambda argv: 0)

    def __call__(self, argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        assert isinstance(argv, list)
        assert "shell" not in options
        assert options["timeout"] > 0
        self.calls.append(list(argv))
        self.inputs.append(options.get("input"))
        code = self.answer(argv)
        return subprocess.CompletedProcess(argv, code, "", "" if code == 0 else "it failed")


def _task(action: str, **parameters: Any) -> Task:
    return Task(id=uuid.uuid4(), action=action, parameters=parameters)


def test_nft_blocks_with_a_kernel_timeout_in_its_own_table(tmp_path):
    runner = FakeRunner(lambda argv: 1 if argv[1:3] == ["list", "table"] else 0)
    responder = Responder(tmp_path, allowed=ALL, runner=runner, firewall="nft")
    result = responder.run(_task("block-ip", ip="203.0.113.7", timeout=600))
    assert result.ok, result.result
    assert result.result["firewall"] == "nft"
    assert runner.calls == [
        ["nft", "list", "table", "inet", "puffin"],
        ["nft", "-f", "-"],
        ["nft", "add", "element", "inet", "puffin", "blocked4", "{ 203.0.113.7 timeout 600s }"],
    ]
    ruleset = runner.inputs[1]
    assert "table inet puffin" in ruleset
    assert "flags timeout" in ruleset
    assert "ip saddr @blocked4 drop" in ruleset

    runner.calls.clear()
    runner.answer = lambda argv: 0  # the table exists now
    again = responder.run(_task("block_ip", ip="2001:db8::5", timeout_seconds=60))
    assert again.ok
    assert runner.calls[-1] == [
        "nft", "add", "element", "inet", "puffin", "blocked6", "{ 2001:db8::5 timeout 60s }"
    ]  # fmt: skip
    unblock = responder.run(_task("unblock-ip", ip="203.0.113.7"))
    assert unblock.ok
    assert runner.calls[-1] == [
        "nft", "delete", "element", "inet", "puffin", "blocked4", "{ 203.0.113.7 }"
    ]  # fmt: skip


def test_iptables_blocks_are_lifted_when_due_even_after_a_restart(tmp_path):
    rules: set[tuple[str, ...]] = set()

    def iptables(argv: list[str]) -> int:
        rule = tuple(argv[4:])
        if argv[3] == "-C":
            return 0 if rule in rules else 1
        (rules.add if argv[3] == "-I" else rules.discard)(rule)
        return 0

    runner = FakeRunner(iptables)
    task = _task("block-ip", ip="198.51.100.23", timeout=300)
    responder = Responder(tmp_path, allowed=ALL, runner=runner, firewall="iptables")
    assert responder.run(task).ok
    assert responder.run(task).ok  # blocking twice adds no second rule
    inserts = [c for c in runner.calls if "-I" in c]
    assert inserts == [["iptables", "-w", "5", "-I", "INPUT", "-s", "198.51.100.23", "-j", "DROP"]]
    assert responder.expire(time.time() + 10) == []  # not yet

    restarted = Responder(tmp_path, allowed=ALL, runner=runner, firewall="iptables")
    (lifted,) = restarted.expire(time.time() + 301)
    assert lifted.task_id == task.id
    assert lifted.ok
    assert lifted.result["action"] == "unblock-ip"
    assert rules == set()
    assert restarted.expire(time.time() + 1000) == []  # lifted once


def test_a_failing_firewall_command_is_reported_and_nothing_is_recorded(tmp_path):
    runner = FakeRunner(lambda argv: 4 if "-I" in argv else 1)
    responder = Responder(tmp_path, allowed=ALL, runner=runner, firewall="iptables")
    result = responder.run(_task("block-ip", ip="192.0.2.50"))
    assert not result.ok
    assert "failed (4): it failed" in result.result["error"]
    assert responder.expire(time.time() + 10**7) == []


@pytest.mark.parametrize(
    ("action", "parameters", "reason"),
    [
        ("run-command", {"argv": ["sh", "-c", "id"]}, "unknown action"),
        ("configure", {}, "unknown action"),
        ("block-ip", {"ip": "203.0.113.7; rm -rf /"}, "not an IP address"),
        ("block-ip", {"ip": "127.0.0.1"}, "loopback"),
        ("block-ip", {"ip": "::"}, "unspecified"),
        ("block-ip", {"ip": "192.0.2.1"}, "protected"),
        ("block-ip", {"ip": "192.0.2.9", "timeout": "600; reboot"}, "timeout must be"),
        ("block-ip", {"ip": "192.0.2.9", "timeout": 10**9}, "timeout must be"),
        ("kill-process", {"pid": 1}, "refusing"),
        ("kill-process", {"pid": os.getpid()}, "refusing"),
        ("kill-process", {"pid": "1234"}, "must be a process id"),
    ],
)
def test_unknown_or_bad_requests_are_refused_without_running_anything(
    tmp_path, action, parameters, reason
):
    runner = FakeRunner()
    responder = Responder(
        tmp_path, allowed=ALL, runner=runner, firewall="nft", protected=["192.0.2.1"]
    )
    result = responder.run(_task(action, **parameters))
    assert not result.ok
    assert reason in result.result["error"]
    assert runner.calls == []


def test_an_action_left_out_of_the_allow_list_is_refused(tmp_path):
    runner = FakeRunner()
    responder = Responder(tmp_path, allowed={"kill-process"}, runner=runner, firewall="nft")
    result = responder.run(_task("block-ip", ip="203.0.113.7"))
    assert not result.ok
    assert "not allowed" in result.result["error"]
    assert runner.calls == []
    server_spelling = Responder(tmp_path, allowed={"block_ip"}, runner=runner, firewall="")
    assert (
        "no firewall tool"
        in server_spelling.run(_task("block_ip", ip="203.0.113.7")).result["error"]
    )  # allowed, then stopped by the missing tool
    no_tool = Responder(tmp_path, allowed=ALL, runner=runner, firewall="")
    assert "no firewall tool" in no_tool.run(_task("block-ip", ip="203.0.113.7")).result["error"]


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_kill_process_terminates_a_real_process(tmp_path):
    child = subprocess.Popen(["sleep", "60"])
    try:
        responder = Responder(tmp_path, allowed=ALL, firewall="")
        wrong_name = responder.run(_task("kill-process", pid=child.pid, name="sshd"))
        assert not wrong_name.ok
        assert child.poll() is None  # a reused pid is not killed
        result = responder.run(_task("kill-process", pid=child.pid, name="sleep"))
        assert result.ok, result.result
        assert result.result == {
            "action": "kill-process",
            "pid": child.pid,
            "name": "sleep",
            "signal": "SIGTERM",
        }
        assert _wait_gone(child.pid)
        gone = responder.run(_task("kill-process", pid=child.pid))
        assert not gone.ok
        assert "no process" in gone.result["error"]
    finally:
        if child.poll() is None:
            child.kill()


def test_a_process_ignoring_sigterm_gets_sigkill(tmp_path):
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(60)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        result = Responder(tmp_path, allowed=ALL, firewall="").run(
            _task("kill_process", pid=child.pid)
        )
        assert result.ok, result.result
        assert result.result["signal"] == "SIGKILL"
        assert _wait_gone(child.pid)
    finally:
        if child.poll() is None:
            child.kill()


CLONE_NEWNET = 0x40000000


def _in_private_network(function: Callable[[], Any]) -> Any:
    """Run `function` in a forked child inside a new network namespace; return its result.

    The host's firewall is never touched: the namespace and its nft table vanish with it.
    """
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
            result = {"result": function()}
        except BaseException as error:
            result = {"error": repr(error)}
        os.write(writer, json.dumps(result, default=str).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(data)
    assert "error" not in answer, answer["error"]
    return answer["result"]


def _reachable(source: str, server: socket.socket) -> bool:
    with socket.socket() as client:
        client.bind((source, 0))
        client.settimeout(1.5)
        try:
            client.connect(server.getsockname())
        except OSError:
            return False
        return True


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (runs in a private network namespace)",
)
def test_a_real_nft_block_drops_the_address_until_unblocked(tmp_path):
    def scenario() -> dict[str, Any]:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "203.0.113.7/32", "dev", "lo"],
            ["ip", "addr", "add", "198.51.100.1/32", "dev", "lo"],
        ):
            subprocess.run(command, check=True, timeout=10)
        responder = Responder(tmp_path, allowed=ALL, firewall="nft")
        with socket.socket() as server:
            server.bind(("198.51.100.1", 0))
            server.listen(16)
            before = _reachable("203.0.113.7", server)
            blocked = responder.run(_task("block-ip", ip="203.0.113.7", timeout=600))
            listed = subprocess.run(
                ["nft", "list", "set", "inet", "puffin", "blocked4"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            during = _reachable("203.0.113.7", server)
            unblocked = responder.run(_task("unblock-ip", ip="203.0.113.7"))
            after = _reachable("203.0.113.7", server)
        return {
            "reachable": [before, during, after],
            "ok": [blocked.ok, unblocked.ok],
            "errors": [blocked.result.get("error"), unblocked.result.get("error")],
            "listed": listed,
        }

    report = _in_private_network(scenario)
    assert report["ok"] == [True, True], report["errors"]
    assert report["reachable"] == [True, False, True]
    assert "203.0.113.7 timeout 10m" in report["listed"]


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("iptables") or not shutil.which("ip"),
    reason="needs root, iptables and ip (runs in a private network namespace)",
)
def test_a_real_iptables_block_is_lifted_by_expire(tmp_path):
    def scenario() -> dict[str, Any]:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "addr", "add", "203.0.113.9/32", "dev", "lo"],
            ["ip", "addr", "add", "198.51.100.1/32", "dev", "lo"],
        ):
            subprocess.run(command, check=True, timeout=10)
        responder = Responder(tmp_path, allowed=ALL, firewall="iptables")
        with socket.socket() as server:
            server.bind(("198.51.100.1", 0))
            server.listen(16)
            blocked = responder.run(_task("block-ip", ip="203.0.113.9", timeout=30))
            during = _reachable("203.0.113.9", server)
            lifted = Responder(tmp_path, allowed=ALL, firewall="iptables").expire(time.time() + 31)
            after = _reachable("203.0.113.9", server)
        return {
            "ok": blocked.ok,
            "error": blocked.result.get("error"),
            "lifted": [result.ok for result in lifted],
            "reachable": [during, after],
        }

    report = _in_private_network(scenario)
    assert report["ok"], report["error"]
    assert report["lifted"] == [True]
    assert report["reachable"] == [False, True]
