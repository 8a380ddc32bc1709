"""The live path: events from an agent become alerts from the built-in rules, in seconds."""

from __future__ import annotations

import time

from tests.integration.test_agent_gateway import _batch, _enroll, server  # noqa: F401

LINE = (
    "Nov 22 10:14:{second:02d} web1 sshd[811]: "
    "{verb} password for {user} from {ip} port 5{n:04d} ssh2"
)


def _alerts(client, **params) -> list[dict]:
    response = client.get("/api/v1/alerts", params=params, headers=client.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _wait_for(client, title: str, seconds: float = 20.0) -> tuple[list[dict], float]:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        found = [a for a in _alerts(client) if a["rule_title"] == title]
        if found:
            return found, time.monotonic() - started
        time.sleep(0.05)
    return [], seconds


def _events(lines: list[str]) -> list[dict]:
    return [
        {"module": "logcollector", "location": "/var/log/auth.log", "full_log": line}
        for line in lines
    ]


def test_a_root_login_from_an_agent_becomes_an_alert(server):  # noqa: F811
    agent = _enroll(server)
    line = LINE.format(second=3, verb="Accepted", user="root", ip="203.0.113.5", n=1)
    ack = server.post("/api/agent/v1/events", **_batch(_events([line]), 1, agent))
    assert ack.status_code == 200
    found, waited = _wait_for(server, "Root login over SSH")
    print(f"alert visible {waited:.2f} s after the batch was acknowledged")
    assert found, [a["rule_title"] for a in _alerts(server)]
    alert = server.get(f"/api/v1/alerts/{found[0]['id']}", headers=server.admin_headers).json()
    assert alert["level"] in ("informational", "low", "medium", "high", "critical")
    assert alert["event"]["src_ip"] == "203.0.113.5"
    assert alert["matched"]
    assert alert["tactics"] or alert["techniques"]


def test_ssh_failures_from_one_address_raise_the_brute_force_correlation(server):  # noqa: F811
    agent = _enroll(server)
    lines = [
        LINE.format(second=i, verb="Failed", user=f"user{i}", ip="198.51.100.7", n=i)
        for i in range(30)
    ]
    ack = server.post("/api/agent/v1/events", **_batch(_events(lines), 1, agent))
    assert ack.status_code == 200
    found, _ = _wait_for(server, "SSH brute force")
    assert found, sorted({a["rule_title"] for a in _alerts(server)})
