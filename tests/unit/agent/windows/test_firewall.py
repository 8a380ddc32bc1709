"""On Windows, block-ip adds an inbound and an outbound Windows Firewall rule through netsh
(an argument list, never a shell) and unblocking deletes them, by hand or when time is up."""

from __future__ import annotations

import json
import subprocess
import types
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from puffin.agent import response
from puffin.agent.response import Responder
from puffin.protocol.wire import Task

NETSH = r"C:\Windows\System32\netsh.exe"
FIREWALL = [NETSH, "advfirewall", "firewall"]


class Netsh:
    """Records each argument list; `answer(argv)` gives (return code, output)."""

    def __init__(self, answer: Callable[[list[str]], tuple[int, str]] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answer = answer or (lambda argv: (0, "Ok.\r\n"))

    def __call__(self, argv: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
        assert isinstance(argv, list)
        assert all(isinstance(arg, str) for arg in argv)
        assert "shell" not in options
        assert options["timeout"] > 0
        assert options["errors"] == "replace"
        self.calls.append(list(argv))
        code, output = self.answer(argv)
        return subprocess.CompletedProcess(argv, code, output, "")


def _task(action: str, **parameters: Any) -> Task:
    return Task(id=uuid.uuid4(), action=action, parameters=parameters)


@pytest.fixture(autouse=True)
def _system_root(monkeypatch):
    monkeypatch.setenv("SYSTEMROOT", r"C:\Windows")


def _add(address: str, direction: str) -> list[str]:
    return [
        *FIREWALL, "add", "rule", f"name=puffin-block-{address}", f"dir={direction}",
        "action=block", f"remoteip={address}", "profile=any", "enable=yes",
    ]  # fmt: skip


def test_a_block_adds_an_inbound_and_an_outbound_rule_named_after_the_address(tmp_path):
    netsh = Netsh()
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    result = responder.run(_task("block_ip", ip="203.0.113.7", timeout=600))
    assert result.ok, result.result
    assert result.result["firewall"] == "netsh"
    assert netsh.calls == [
        [*FIREWALL, "delete", "rule", "name=puffin-block-203.0.113.7"],
        _add("203.0.113.7", "in"),
        _add("203.0.113.7", "out"),
    ]
    saved = json.loads((tmp_path / "responses.json").read_text())
    assert saved["blocks"]["203.0.113.7"]["firewall"] == "netsh"


def test_an_ipv6_block_uses_the_same_rules(tmp_path):
    netsh = Netsh()
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    assert responder.run(_task("block-ip", ip="2001:db8::5")).ok
    assert netsh.calls[1:] == [_add("2001:db8::5", "in"), _add("2001:db8::5", "out")]


def test_unblock_deletes_the_rules_of_that_name(tmp_path):
    netsh = Netsh()
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    responder.run(_task("block-ip", ip="198.51.100.9"))
    netsh.calls.clear()
    result = responder.run(_task("unblock-ip", ip="198.51.100.9"))
    assert result.ok, result.result
    assert netsh.calls == [[*FIREWALL, "delete", "rule", "name=puffin-block-198.51.100.9"]]
    assert json.loads((tmp_path / "responses.json").read_text())["blocks"] == {}


def test_unblocking_an_address_no_rule_names_is_refused_with_netshs_words(tmp_path):
    netsh = Netsh(lambda argv: (1, "\r\nNo rules match the specified criteria.\r\n\r\n"))
    responder = Responder(tmp_path, allowed={"unblock-ip"}, runner=netsh, firewall="netsh")
    result = responder.run(_task("unblock-ip", ip="198.51.100.10"))
    assert not result.ok
    assert "198.51.100.10 is not blocked" in result.result["error"]
    assert "No rules match" in result.result["error"]


def test_a_block_that_half_fails_leaves_no_rule_behind_and_says_why(tmp_path):
    def answer(argv: list[str]) -> tuple[int, str]:
        if "dir=out" in argv:
            return 1, "The requested operation requires elevation (Run as administrator)."
        return 0, "Ok."

    netsh = Netsh(answer)
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    result = responder.run(_task("block-ip", ip="203.0.113.8"))
    assert not result.ok
    assert "requires elevation" in result.result["error"]
    assert netsh.calls[-1] == [*FIREWALL, "delete", "rule", "name=puffin-block-203.0.113.8"]
    assert not (tmp_path / "responses.json").exists()


def test_a_block_whose_time_is_up_is_lifted_after_a_restart(tmp_path):
    netsh = Netsh()
    responder = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    task = _task("block-ip", ip="192.0.2.44", timeout=60)
    responder.run(task)
    restarted = Responder(tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh")
    netsh.calls.clear()
    assert restarted.expire(now=0) == []  # not due yet
    [lifted] = restarted.expire(now=4_000_000_000)
    assert lifted.ok
    assert lifted.task_id == task.id
    assert lifted.result["ip"] == "192.0.2.44"
    assert netsh.calls == [[*FIREWALL, "delete", "rule", "name=puffin-block-192.0.2.44"]]
    assert restarted.expire(now=4_000_000_001) == []


def test_the_agents_server_and_loopback_are_never_blocked(tmp_path):
    netsh = Netsh()
    responder = Responder(
        tmp_path, allowed={"block-ip"}, runner=netsh, firewall="netsh", protected=["192.0.2.1"]
    )
    assert not responder.run(_task("block-ip", ip="192.0.2.1")).ok
    assert not responder.run(_task("block-ip", ip="127.0.0.1")).ok
    assert netsh.calls == []


def test_windows_is_detected_as_netsh(monkeypatch):
    monkeypatch.setattr(response, "sys", types.SimpleNamespace(platform="win32"))
    assert response.detect_firewall() == "netsh"


def test_on_windows_the_processes_windows_needs_are_not_killed(tmp_path, monkeypatch):
    class Process:
        def __init__(self, pid: int) -> None:
            self.pid = pid

        def name(self) -> str:
            return {4: "System", 700: "csrss.exe", 800: "LSASS.EXE"}[self.pid]

        def terminate(self) -> None:
            raise AssertionError("must not be signalled")

    monkeypatch.setattr(response, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(response.psutil, "Process", Process)
    responder = Responder(tmp_path, allowed={"kill-process"}, runner=Netsh(), firewall="netsh")
    for pid, name in [(4, "System"), (700, "csrss.exe"), (800, "LSASS.EXE")]:
        result = responder.run(_task("kill-process", pid=pid))
        assert not result.ok
        assert result.result["error"] == f"refusing to kill {name} (pid {pid}): Windows needs it"
