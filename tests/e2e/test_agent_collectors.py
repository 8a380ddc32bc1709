"""A real agent with FIM and rootcheck switched on: its findings reach the server's API."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import httpx
import pytest
from tests.e2e.test_agent_delivery import _agent, _api_key
from tests.e2e.test_server_https import _free_port, _start, _stop, _wait_ready

pytestmark = pytest.mark.e2e


def _search(base: str, context, key: str, text: str) -> list[dict]:
    response = httpx.get(
        f"{base}/api/v1/events",
        params={"limit": 100, "text": text},
        headers={"Authorization": f"Bearer {key}"},
        verify=context,
    )
    return response.json()["items"]


def test_agent_watches_a_fim_folder_and_runs_rootcheck(tmp_path):
    server_dir, agent_dir = tmp_path / "server", tmp_path / "agent"
    server_dir.mkdir()
    watched = tmp_path / "etc"
    watched.mkdir()
    (watched / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    fake_root = tmp_path / "root"
    (fake_root / "usr" / "bin").mkdir(parents=True)
    planted = json.loads(_signatures_path().read_text())["files"][0]
    target = fake_root / planted["path"].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("x")
    config = tmp_path / "agent.json"
    config.write_text(
        json.dumps(
            {
                "fim": {"paths": [str(watched)], "realtime": [str(watched)]},
                "rootcheck": {"checks": ["files"], "root": str(fake_root)},
            }
        )
    )
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
        enrolled = _agent(
            "enroll",
            "--server",
            base,
            "--token",
            token["token"],
            "--fingerprint",
            token["server_fingerprint"],
            "--state-dir",
            str(agent_dir),
        )
        assert enrolled.returncode == 0, enrolled.stderr
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "puffin.agent",
                "run",
                "--state-dir",
                str(agent_dir),
                "--config",
                str(config),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not _search(base, context, key, "baseline"):
                time.sleep(0.5)
            with (watched / "passwd").open("a") as handle:
                handle.write("mallory:x:0:0::/root:/bin/bash\n")
            found: dict[str, list[dict]] = {}
            while time.monotonic() < deadline:
                found = {
                    "fim": _search(base, context, key, str(watched / "passwd")),
                    "rootkit": _search(base, context, key, planted["rootkit"]),
                }
                if all(found.values()):
                    break
                time.sleep(1)
        finally:
            agent.send_signal(signal.SIGINT)
            output, _ = agent.communicate(timeout=30)
        assert found.get("fim"), output
        modified = found["fim"][0]
        assert modified["data"]["module"] == "fim"
        assert "mallory" in modified["data"].get("diff", "")
        assert found.get("rootkit"), output
        assert found["rootkit"][0]["data"]["title"] == f"Possible rootkit: {planted['rootkit']}"
    finally:
        _stop(server)


def _signatures_path():
    from importlib import resources

    return resources.files("puffin.agent").joinpath("rootcheck_signatures.json")
