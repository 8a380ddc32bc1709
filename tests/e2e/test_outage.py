"""Outages: the server is stopped, or the agent or the server is killed with SIGKILL, while
100,000+ events are written — every event still arrives exactly once."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import httpx
import pytest
from tests.e2e.test_agent_delivery import _agent, _api_key
from tests.e2e.test_server_https import _free_port, _start, _stop, _wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIRST, SECOND, THIRD = 50_000, 50_000, 20_000


def _count(base: str, context, key: str) -> int:
    response = httpx.get(
        f"{base}/api/v1/events",
        params={"limit": 1, "module": "logcollector"},
        headers={"Authorization": f"Bearer {key}"},
        verify=context,
        timeout=30,
    )
    return int(response.json()["total"])


def _distinct(server_dir) -> tuple[int, int]:
    import sqlite3

    with sqlite3.connect(server_dir / "events.db") as db:
        total, distinct = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT full_log) FROM event WHERE module = 'logcollector'"
        ).fetchone()
    return int(total), int(distinct)


def _write(log, start: int, count: int) -> None:
    with log.open("a") as handle:
        handle.write("".join(f"outage event {i:07d}\n" for i in range(start, start + count)))


def _run_agent(agent_dir, log) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "puffin.agent",
            "run",
            "--state-dir",
            str(agent_dir),
            "--log",
            str(log),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_for(base, context, key, expected: int, seconds: float = 180) -> int:
    deadline = time.monotonic() + seconds
    seen = 0
    while time.monotonic() < deadline:
        try:
            seen = _count(base, context, key)
        except httpx.HTTPError:
            seen = -1
        if seen >= expected:
            return seen
        time.sleep(1)
    return seen


def test_nothing_is_lost_or_doubled_through_outages_and_kills(tmp_path):
    server_dir, agent_dir, log = tmp_path / "server", tmp_path / "agent", tmp_path / "app.log"
    server_dir.mkdir()
    port = _free_port()
    server = _start(server_dir, port)
    context = _wait_ready(server_dir, port)
    base = f"https://127.0.0.1:{port}"
    key = _api_key(server_dir)
    token = httpx.post(
        f"{base}/api/v1/enrollment-tokens",
        json={},
        headers={"Authorization": f"Bearer {key}"},
        verify=context,
    ).json()["token"]
    assert (
        _agent(
            "enroll", "--server", base, "--token", token, "--state-dir", str(agent_dir)
        ).returncode
        == 0
    )
    log.touch()
    agent = _run_agent(agent_dir, log)
    try:
        _write(log, 0, FIRST)
        time.sleep(1.5)
        _stop(server)  # the server goes away while the agent is delivering
        _write(log, FIRST, SECOND)  # the agent keeps collecting into its outbox
        time.sleep(3)
        server = _start(server_dir, port)
        _wait_ready(server_dir, port)
        assert _wait_for(base, context, key, FIRST + SECOND) == FIRST + SECOND

        _write(log, FIRST + SECOND, THIRD)
        time.sleep(0.7)
        agent.kill()  # SIGKILL mid-batch
        agent.wait()
        server.send_signal(signal.SIGKILL)  # and the server too
        server.wait()
        server = _start(server_dir, port)
        _wait_ready(server_dir, port)
        agent = _run_agent(agent_dir, log)
        expected = FIRST + SECOND + THIRD
        assert _wait_for(base, context, key, expected) == expected
        time.sleep(3)  # anything resent after the kill must not be stored twice
        assert _distinct(server_dir) == (expected, expected)
    finally:
        agent.send_signal(signal.SIGINT)
        agent.wait(timeout=30)
        _stop(server)
