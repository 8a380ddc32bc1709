"""The live path through the real server and its detection worker: dedupe windows from the
rules' YAML and from settings, staged rules that forward nothing, `expand` placeholders
from settings, and syslog messages (UDP and TCP) that become alerts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.integration.test_agent_gateway import _batch, _enroll

from puffin.alert.outputs import AlertForwarded, alert_outputs
from puffin.app import create_app
from puffin.auth import credentials
from puffin.auth.credentials import ThrottlePolicy
from puffin.auth.schemas import ApiKeyCreate
from puffin.core.db import transaction
from puffin.core.settings import Settings

SQL_INJECTION = "8c5659fe-c792-4cab-b585-87327e50f2ae"  # puffin: dedupe [agent, src_ip] 10m
ROOT_LOGIN = "9a32b578-5d3c-4ff8-adea-93b7e5d31fba"  # no dedupe of its own
SSH_BRUTE_FORCE = "1af64b96-c9e2-4ed6-911a-94d86580ced4"  # puffin: dedupe [agent, src_ip] 1h
SITE_RULE = "3c0a8f52-6a55-4b0e-9d0f-3f1c2b7a9e10"
WAIT_SECONDS = 30.0  # generous: only how long to wait, never a pass/fail figure

ACCESS = (
    '{ip} - - [04/Dec/2026:10:{minute:02d}:{second:02d} +0000] "GET /item?id=1%27%20OR'
    '%20%271%27=%271 HTTP/1.1" 200 512 "-" "curl/8.0"'
)
SSHD = (
    "Dec  4 10:{minute:02d}:{second:02d} web1 sshd[811]: "
    "{verb} password for {user} from {ip} port 5{n:04d} ssh2"
)

SITE_PACK_RULE = f"""\
title: Login by a service account
id: {SITE_RULE}
status: test
logsource:
  product: linux
  service: sshd
detection:
  selection:
    action: login
    status: success
    user|expand: '%service_accounts%'
  condition: selection
level: high
"""


@contextmanager
def _server(tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    announced: list[str] = []
    settings = Settings(data_dir=tmp_path, environment="test", tls=False, **overrides)
    app = create_app(settings, announce=announced.append)
    with TestClient(app) as client:
        password = announced[0].split("password: ")[1].strip()
        with transaction(app.state.puffin.session_factory) as session:
            user = credentials.verify_credentials(
                session=session, username="admin", password=password, policy=ThrottlePolicy()
            )
            info = credentials.open_session(
                session=session, user=user, ip=None, max_age_seconds=600
            )
            key = credentials.create_api_key(
                session=session, principal=info.principal, key_in=ApiKeyCreate(name="t")
            )
        client.admin_headers = {"Authorization": f"Bearer {key.key}"}  # type: ignore[attr-defined]
        yield client


def _send(client: TestClient, agent: dict[str, str], lines: list[str], sequence: int) -> None:
    events = [
        {"module": "logcollector", "location": "/var/log/app.log", "full_log": line}
        for line in lines
    ]
    ack = client.post("/api/agent/v1/events", **_batch(events, sequence, agent))
    assert ack.status_code == 200, ack.text


def _alerts(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = client.get(
        "/api/v1/alerts", params={"limit": 200, **params}, headers=client.admin_headers
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


def _until(found: Callable[[], Any]) -> Any:
    """Return the first truthy value of `found()`, polling up to WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.05)
    return found()


def _of_rule(client: TestClient, rule_id: str, **params: Any) -> list[dict[str, Any]]:
    return [a for a in _alerts(client, rule_id=rule_id, **params) if a["rule_id"] == rule_id]


def _hits(client: TestClient, rule_id: str, total: int) -> list[dict[str, Any]]:
    """Wait until the rule's alerts hold `total` hits, then return them."""
    return _until(
        lambda: (
            (alerts := _of_rule(client, rule_id))
            and sum(a["hits"] for a in alerts) >= total
            and alerts
        )
    )


def _src_ip(client: TestClient, alert: dict[str, Any]) -> str:
    detail = client.get(f"/api/v1/alerts/{alert['id']}", headers=client.admin_headers).json()
    return str(detail["event"]["src_ip"])


def test_a_rules_own_dedupe_folds_repeats_by_its_fields_until_the_window_ends(tmp_path):
    with _server(tmp_path) as client:
        agent = _enroll(client)
        first = [ACCESS.format(ip="203.0.113.9", minute=0, second=s) for s in range(1, 5)]
        other = [ACCESS.format(ip="203.0.113.10", minute=0, second=s) for s in (5, 6)]
        _send(client, agent, first + other, 1)
        # Fifteen minutes after the first hit: the ten-minute window is over.
        _send(client, agent, [ACCESS.format(ip="203.0.113.9", minute=15, second=0)], 2)
        alerts = _hits(client, SQL_INJECTION, 7)
        by_source = sorted((_src_ip(client, a), a["hits"]) for a in alerts)
        assert by_source == [("203.0.113.10", 2), ("203.0.113.9", 1), ("203.0.113.9", 4)]
        rule = client.get(f"/api/v1/rules/{SQL_INJECTION}", headers=client.admin_headers).json()
        assert rule["dedupe"] == {"fields": ["agent", "src_ip"], "window_seconds": 600}


def test_the_settings_default_folds_rules_without_a_dedupe_of_their_own(tmp_path):
    with _server(tmp_path, detection={"dedupe": {"fields": ["agent"], "window": "10m"}}) as client:
        one, two = _enroll(client, "host-1"), _enroll(client, "host-2")
        logins = [
            SSHD.format(minute=0, second=s, verb="Accepted", user="root", ip=f"198.51.100.{s}", n=s)
            for s in range(3)
        ]
        _send(client, one, logins, 1)
        _send(client, two, logins[:1], 1)
        alerts = _hits(client, ROOT_LOGIN, 4)
        assert sorted((a["source_name"], a["hits"]) for a in alerts) == [
            ("host-1", 3),
            ("host-2", 1),
        ]


def test_without_any_dedupe_each_match_is_its_own_alert(tmp_path):
    with _server(tmp_path) as client:
        agent = _enroll(client)
        logins = [
            SSHD.format(minute=0, second=s, verb="Accepted", user="root", ip="198.51.100.1", n=s)
            for s in range(3)
        ]
        _send(client, agent, logins, 1)
        alerts = _hits(client, ROOT_LOGIN, 3)
        assert [a["hits"] for a in alerts] == [1, 1, 1]


def test_a_long_brute_force_is_one_alert_per_source_counting_each_threshold_reached(tmp_path):
    with _server(tmp_path) as client:
        agent = _enroll(client)
        failures = [
            SSHD.format(minute=1, second=i, verb="Failed", user=f"u{i}", ip="198.51.100.7", n=i)
            for i in range(30)
        ] + [
            SSHD.format(minute=2, second=i, verb="Failed", user=f"u{i}", ip="198.51.100.8", n=i)
            for i in range(10)
        ]
        _send(client, agent, failures, 1)
        alerts = _hits(client, SSH_BRUTE_FORCE, 4)
        assert sorted((_src_ip(client, a), a["hits"]) for a in alerts) == [
            ("198.51.100.7", 3),
            ("198.51.100.8", 1),
        ]


def _switch(client: TestClient, rule_id: str, **switches: bool) -> None:
    response = client.put(
        f"/api/v1/rules/{rule_id}/settings", json=switches, headers=client.admin_headers
    )
    assert response.status_code == 200, response.text


def test_staged_rules_store_alerts_that_are_hidden_and_never_forwarded(tmp_path):
    with _server(tmp_path) as client:
        forwarded: list[AlertForwarded] = []

        def output(item: AlertForwarded) -> None:
            if item.alert.rule_id == ROOT_LOGIN:  # the same lines raise other rules too
                forwarded.append(item)

        alert_outputs(client.app.state.puffin).register("test", output)
        agent = _enroll(client)

        def login(n: int) -> str:
            ip = f"192.0.2.{n}"
            return SSHD.format(minute=0, second=n, verb="Accepted", user="root", ip=ip, n=n)

        _send(client, agent, [login(1)], 1)
        live = _until(lambda: _of_rule(client, ROOT_LOGIN))
        assert _until(lambda: forwarded)
        assert [f.alert.id for f in forwarded] == [_uuid(live[0]["id"])]

        _switch(client, ROOT_LOGIN, staged=True)
        _send(client, agent, [login(2)], 2)
        staged = _until(lambda: _of_rule(client, ROOT_LOGIN, staged="only"))
        assert [a["staged"] for a in staged] == [True]
        assert len(_of_rule(client, ROOT_LOGIN)) == 1  # the default list hides it
        assert len(_of_rule(client, ROOT_LOGIN, staged="include")) == 2
        stats = client.get("/api/v1/alerts/stats", headers=client.admin_headers).json()
        assert sum(item["count"] for item in stats["by_level"]) == len(_alerts(client))

        _switch(client, ROOT_LOGIN, staged=False)
        _send(client, agent, [login(3)], 3)
        assert _until(lambda: len(forwarded) >= 2)
        promoted = [a for a in _of_rule(client, ROOT_LOGIN) if a["id"] != live[0]["id"]]
        # The alert stored while staged was not forwarded on promotion; the next one was.
        assert [f.alert.id for f in forwarded] == [_uuid(live[0]["id"]), _uuid(promoted[0]["id"])]
        assert staged[0]["id"] not in {str(f.alert.id) for f in forwarded}
        assert all(not f.alert.staged for f in forwarded)


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


def _site_pack(data_dir: Path) -> None:
    pack = data_dir / "rules" / "site"
    pack.mkdir(parents=True)
    (pack / "service_account_login.yml").write_text(SITE_PACK_RULE)


def _service_account_then_root(client: TestClient) -> None:
    """Send a service account's login, then a root login that always alerts (a marker)."""
    agent = _enroll(client)
    deploy = SSHD.format(minute=0, second=1, verb="Accepted", user="deploy", ip="192.0.2.20", n=1)
    root = SSHD.format(minute=0, second=2, verb="Accepted", user="root", ip="192.0.2.21", n=2)
    _send(client, agent, [deploy, root], 1)
    assert _until(lambda: _of_rule(client, ROOT_LOGIN))


def test_expand_placeholders_from_settings_make_the_rule_match(tmp_path):
    _site_pack(tmp_path)
    placeholders = {"service_accounts": ["backup", "deploy"]}
    with _server(tmp_path, detection={"placeholders": placeholders}) as client:
        _service_account_then_root(client)
        assert [a["rule_title"] for a in _of_rule(client, SITE_RULE)] == [
            "Login by a service account"
        ]
        rule = client.get(f"/api/v1/rules/{SITE_RULE}", headers=client.admin_headers).json()
        assert rule["warnings"] == []


def test_a_placeholder_without_values_is_reported_on_the_rule(tmp_path):
    _site_pack(tmp_path)
    with _server(tmp_path) as client:
        _service_account_then_root(client)
        assert _of_rule(client, SITE_RULE) == []
        rule = client.get(f"/api/v1/rules/{SITE_RULE}", headers=client.admin_headers).json()
        assert any("%service_accounts%" in warning for warning in rule["warnings"])


def test_a_syslog_datagram_on_loopback_becomes_an_alert_in_the_api(tmp_path):
    with _server(tmp_path, syslog_host="127.0.0.1", syslog_udp_port=0) as client:
        port = client.app.state.puffin.extras["background"].syslog_ports["udp"]
        line = "<38>" + SSHD.format(
            minute=3, second=4, verb="Accepted", user="root", ip="203.0.113.44", n=9
        )
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(line.encode(), ("127.0.0.1", port))
        [alert] = _until(lambda: _of_rule(client, ROOT_LOGIN))
        assert alert["source_name"] == "syslog-127.0.0.1"
        assert _src_ip(client, alert) == "203.0.113.44"


def test_syslog_over_tcp_in_both_framings_becomes_alerts_in_the_api(tmp_path):
    with _server(tmp_path, syslog_host="127.0.0.1", syslog_tcp_port=0) as client:
        port = client.app.state.puffin.extras["background"].syslog_ports["tcp"]
        rfc3164 = "<38>" + SSHD.format(
            minute=5, second=1, verb="Accepted", user="root", ip="203.0.113.51", n=1
        )
        rfc5424 = (
            b"<38>1 2026-12-04T10:05:02Z web2 sshd 812 - - "
            b"Accepted password for root from 203.0.113.52 port 50002 ssh2"
        )
        with socket.create_connection(("127.0.0.1", port)) as sender:
            # RFC 6587: one newline-terminated frame, then one octet-counted frame.
            sender.sendall(rfc3164.encode() + b"\n" + b"%d " % len(rfc5424) + rfc5424)
        alerts = _until(lambda: len(found := _of_rule(client, ROOT_LOGIN)) >= 2 and found)
        assert sorted(_src_ip(client, alert) for alert in alerts) == [
            "203.0.113.51",
            "203.0.113.52",
        ]
        assert {alert["source_name"] for alert in alerts} == {"syslog-127.0.0.1"}
