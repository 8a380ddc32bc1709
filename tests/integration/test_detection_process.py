"""Live detection in its own process: alerts still come, a killed child is replaced and
resumes where its last commit left off (nothing twice), and it stops with the server."""

from __future__ import annotations

import os
import signal
import time

import pytest
from fastapi.testclient import TestClient
from tests.integration.test_agent_gateway import _batch, _enroll, admin_headers

from puffin.app import create_app
from puffin.core.settings import DetectionSettings, Settings, settings_json

SECRET = "pG7-detection-child-secret-4f1c9a2e77b0"
LINE = (
    "Nov 22 10:14:0{n} web1 sshd[811]: Accepted password for root from 203.0.113.{n} port 5022 ssh2"
)


@pytest.fixture
def server(tmp_path):
    announced: list[str] = []
    settings = Settings(
        data_dir=tmp_path, environment="test", tls=False, detection=DetectionSettings(process=True)
    )
    app = create_app(settings, announce=announced.append)
    with TestClient(app) as client:
        client.admin_headers = admin_headers(app, announced)  # type: ignore[attr-defined]
        client.background = app.state.puffin.extras["background"]  # type: ignore[attr-defined]
        yield client


def _root_logins(client) -> list[dict]:
    response = client.get("/api/v1/alerts", params={"limit": 100}, headers=client.admin_headers)
    assert response.status_code == 200, response.text
    return [a for a in response.json()["items"] if a["rule_title"] == "Root login over SSH"]


def _sources(client, alerts: list[dict]) -> list[str]:
    details = [
        client.get(f"/api/v1/alerts/{a['id']}", headers=client.admin_headers).json() for a in alerts
    ]
    return sorted(d["event"]["src_ip"] for d in details)


def _wait_for_alerts(client, count: int, seconds: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + seconds  # a generous bound for a loaded machine
    found = _root_logins(client)
    while len(found) < count and time.monotonic() < deadline:
        time.sleep(0.1)
        found = _root_logins(client)
    return found


def _send(client, agent, sequence: int, n: int) -> None:
    event = {
        "module": "logcollector",
        "location": "/var/log/auth.log",
        "full_log": LINE.format(n=n),
    }
    ack = client.post("/api/agent/v1/events", **_batch([event], sequence, agent))
    assert ack.status_code == 200, ack.text


def test_detection_runs_in_a_child_process_and_raises_alerts(server):
    background = server.background
    assert background.detection is None  # no detection thread in the server itself
    child = background.detection_process.process
    assert child.is_alive()
    assert child.pid != os.getpid()
    agent = _enroll(server)
    _send(server, agent, 1, 1)
    found = _wait_for_alerts(server, 1)
    assert _sources(server, found) == ["203.0.113.1"]


def test_a_killed_child_is_replaced_and_nothing_is_raised_twice(server):
    agent = _enroll(server)
    _send(server, agent, 1, 1)
    assert len(_wait_for_alerts(server, 1)) == 1
    supervisor = server.background.detection_process
    first = supervisor.process
    os.kill(first.pid, signal.SIGKILL)
    _send(server, agent, 2, 2)  # stored while no detection runs
    found = _wait_for_alerts(server, 2)
    assert _sources(server, found) == ["203.0.113.1", "203.0.113.2"]
    assert supervisor.restarts >= 1
    assert supervisor.process.pid != first.pid
    time.sleep(1.0)  # the new child had its chance to repeat the first event: it must not
    assert len(_root_logins(server)) == 2


def test_the_child_stops_with_the_server(server):
    agent = _enroll(server)
    _send(server, agent, 1, 1)
    assert len(_wait_for_alerts(server, 1)) == 1  # the child is up and detecting
    child = server.background.detection_process.process
    server.__exit__(None, None, None)  # the server's shutdown, as on SIGTERM
    child.join(timeout=15)
    assert not child.is_alive()
    assert child.exitcode == 0  # it finished its batch and left on SIGTERM, not killed


def test_the_child_gets_the_settings_secrets_the_web_would_mask(tmp_path):
    settings = Settings(data_dir=tmp_path, environment="test", tls=False, secret_key=SECRET)
    again = Settings.model_validate_json(settings_json(settings))
    assert again.secret_key is not None
    assert again.secret_key.get_secret_value() == SECRET
    assert again.data_dir == settings.data_dir
