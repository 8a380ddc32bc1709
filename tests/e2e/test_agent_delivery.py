"""A real server and a real agent process on loopback: enrol with a pinned certificate,
tail a file through rotation, and deliver every line exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_server_https import _free_port, _start, _stop, _wait_ready

pytestmark = pytest.mark.e2e


def _api_key(data_dir: Path) -> str:
    from sqlalchemy import select

    from puffin.app import build_state
    from puffin.auth import credentials
    from puffin.auth.models import User
    from puffin.auth.schemas import ApiKeyCreate
    from puffin.core.db import transaction
    from puffin.core.settings import Settings

    state = build_state(Settings(data_dir=data_dir))
    with transaction(state.session_factory) as session:
        user = session.scalars(select(User).where(User.username == "admin")).one()
        info = credentials.open_session(session=session, user=user, ip=None, max_age_seconds=60)
        key = credentials.create_api_key(
            session=session, principal=info.principal, key_in=ApiKeyCreate(name="e2e")
        ).key
    state.engine.dispose()
    return key


def _agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "puffin.agent", *args], capture_output=True, text=True, timeout=120
    )


def _events(base: str, context, key: str) -> list[dict]:
    response = httpx.get(
        f"{base}/api/v1/events",
        params={"limit": 500, "text": "e2e line"},
        headers={"Authorization": f"Bearer {key}"},
        verify=context,
    )
    return response.json()["items"]


def test_agent_enrols_tails_a_rotating_file_and_delivers_each_line_once(tmp_path):
    server_dir, agent_dir = tmp_path / "server", tmp_path / "agent"
    server_dir.mkdir()
    port = _free_port()
    server = _start(server_dir, port)
    try:
        context = _wait_ready(server_dir, port)
        base = f"https://127.0.0.1:{port}"
        key = _api_key(server_dir)
        token = httpx.post(
            f"{base}/api/v1/enrollment-tokens",
            json={"max_uses": 1},
            headers={"Authorization": f"Bearer {key}"},
            verify=context,
        ).json()
        wrong = _agent(
            "enroll",
            "--server",
            base,
            "--token",
            token["token"],
            "--state-dir",
            str(agent_dir),
            "--fingerprint",
            "00:11",
        )
        assert wrong.returncode == 1
        assert "not the expected" in wrong.stderr
        enrolled = _agent(
            "enroll",
            "--server",
            base,
            "--token",
            token["token"],
            "--name",
            "e2e-host",
            "--state-dir",
            str(agent_dir),
            "--fingerprint",
            token["server_fingerprint"],
        )
        assert enrolled.returncode == 0, enrolled.stderr
        assert token["server_fingerprint"] in enrolled.stdout
        assert oct(os.stat(agent_dir).st_mode & 0o777) == "0o700"
        assert oct(os.stat(agent_dir / "enrolment.json").st_mode & 0o777) == "0o600"

        log = tmp_path / "app.log"
        log.write_text("".join(f"e2e line {i}\n" for i in range(100)))
        agent = subprocess.Popen(
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
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            time.sleep(2)
            with log.open("a") as handle:  # written just before a rename rotation
                handle.write("".join(f"e2e line {i}\n" for i in range(100, 150)))
            log.rename(tmp_path / "app.log.1")
            log.write_text("".join(f"e2e line {i}\n" for i in range(150, 200)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(_events(base, context, key)) < 200:
                time.sleep(1)
        finally:
            agent.send_signal(signal.SIGINT)
            agent.wait(timeout=30)
        lines = sorted(e["full_log"] for e in _events(base, context, key))
        assert lines == sorted(f"e2e line {i}" for i in range(200))
        agents = httpx.get(
            f"{base}/api/v1/agents", headers={"Authorization": f"Bearer {key}"}, verify=context
        ).json()["items"]
        assert agents[0]["name"] == "e2e-host"
        assert agents[0]["status"] == "active"
    finally:
        _stop(server)
