"""A real `puffin server run` process: HTTPS with its generated certificate, one-time
admin password, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {**os.environ, "PUFFIN_DATA_DIR": str(data_dir), "PUFFIN_PORT": str(port)}
    env.pop("PUFFIN_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "puffin.cli.main", "server", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=data_dir,
    )


def _wait_ready(data_dir: Path, port: int) -> ssl.SSLContext:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        cert = data_dir / "tls" / "server.crt"
        if cert.exists():
            context = ssl.create_default_context(cafile=str(cert))
            try:
                if httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context).is_success:
                    return context
            except (httpx.HTTPError, OSError):
                pass
        time.sleep(0.2)
    raise AssertionError("the server did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    return output


def test_server_serves_https_and_announces_the_admin_password_once(tmp_path):
    port = _free_port()
    first = _start(tmp_path, port)
    try:
        context = _wait_ready(tmp_path, port)
        ready = httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context)
        assert ready.json() == {"status": "ready"}
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"https://127.0.0.1:{port}/healthz", verify=True)  # not a public CA
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        login = httpx.get(f"https://127.0.0.1:{port}/login", verify=context)
        assert login.status_code == 200
        assert login.headers["strict-transport-security"].startswith("max-age=")
    finally:
        output = _stop(first)
    # uvicorn shuts down cleanly, then re-raises the signal it caught.
    assert first.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in output
    assert output.count("password:") == 1
    assert "SHA-256" in output

    second = _start(tmp_path, port)
    try:
        _wait_ready(tmp_path, port)
    finally:
        again = _stop(second)
    assert "password:" not in again
