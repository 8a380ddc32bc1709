"""`puffin demo` (what `make demo` runs): an HTTPS server, the admin password printed once,
and a local agent that enrols against the pinned certificate and delivers events."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_agent_delivery import _api_key
from tests.e2e.test_server_https import _free_port, _wait_ready

pytestmark = [pytest.mark.e2e]

WAIT_SECONDS = 90


def test_demo_serves_https_prints_the_password_and_its_agent_delivers(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUFFIN_")}
    demo = subprocess.Popen(
        [
            *(sys.executable, "-m", "puffin.cli.main", "demo", "--data-dir", str(data_dir)),
            *("--port", str(port), "--syslog-port", "0"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        context = _wait_ready(data_dir, port)
        key = _api_key(data_dir)
        headers = {"Authorization": f"Bearer {key}"}
        base = f"https://127.0.0.1:{port}"
        deadline = time.monotonic() + WAIT_SECONDS
        agent: dict[str, object] | None = None
        while agent is None or agent["status"] != "active":
            assert time.monotonic() < deadline, "the demo agent never became active"
            page = httpx.get(f"{base}/api/v1/agents", headers=headers, verify=context).json()
            agents = page["items"]
            agent = next((a for a in agents if str(a["name"]).endswith("-demo")), None)
            time.sleep(0.5)
        with (data_dir / "demo-app.log").open("a") as log:
            log.write("Dec  4 09:00:00 web1 app[1]: demo marker\n")
        while True:
            assert time.monotonic() < deadline, "the demo agent delivered no event"
            events = httpx.get(
                f"{base}/api/v1/events",
                params={"source_id": agent["id"], "text": "demo marker"},
                headers=headers,
                verify=context,
            )
            assert events.status_code == 200, events.text
            if events.json()["items"]:
                break
            time.sleep(0.5)
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=60)
    assert f"https://127.0.0.1:{port}/" in output
    password = re.search(r"password: (\S+)", output)
    assert password is not None, output
    assert len(password.group(1)) >= 16
    assert "error:" not in output, output
