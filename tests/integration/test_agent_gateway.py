"""The agent gateway: enrolment, batches acknowledged once stored, keep-alives with tasks."""

from __future__ import annotations

import gzip
import json
import time
import uuid

import pytest
from fastapi.testclient import TestClient

from puffin.api.agent_gateway import flush_contacts
from puffin.app import create_app
from puffin.auth import credentials
from puffin.auth.credentials import ThrottlePolicy
from puffin.auth.schemas import ApiKeyCreate
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.endpoint import service as endpoint_service
from puffin.ingest.batches import MAX_DECOMPRESSED_BYTES


@pytest.fixture
def server(tmp_path):
    announced: list[str] = []
    app = create_app(
        Settings(data_dir=tmp_path, environment="test", tls=False), announce=announced.append
    )
    with TestClient(app) as client:
        client.admin_headers = admin_headers(app, announced)  # type: ignore[attr-defined]
        yield client


def admin_headers(app, announced: list[str]) -> dict[str, str]:
    """Sign in as the first admin (password from the start-up announcement); an API key."""
    password = announced[0].split("password: ")[1].strip()
    with transaction(app.state.puffin.session_factory) as session:
        user = credentials.verify_credentials(
            session=session, username="admin", password=password, policy=ThrottlePolicy()
        )
        info = credentials.open_session(session=session, user=user, ip=None, max_age_seconds=600)
        key = credentials.create_api_key(
            session=session, principal=info.principal, key_in=ApiKeyCreate(name="t")
        )
    return {"Authorization": f"Bearer {key.key}"}


def _enroll(server, name="host-1"):
    token = server.post(
        "/api/v1/enrollment-tokens", json={"max_uses": 2}, headers=server.admin_headers
    ).json()["token"]
    response = server.post(
        "/api/agent/v1/enroll", json={"token": token, "name": name, "os_name": "Linux"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return {"X-Puffin-Agent": body["agent_id"], "Authorization": f"Bearer {body['credential']}"}


def _batch(events, sequence, headers, encoding="gzip"):
    raw = json.dumps({"events": events}).encode()
    body = gzip.compress(raw) if encoding == "gzip" else raw
    return {
        "content": body,
        "headers": {
            **headers,
            "Content-Encoding": encoding,
            "X-Puffin-Sequence": str(sequence),
            "Content-Type": "application/json",
        },
    }


def test_a_batch_is_stored_once_and_searchable(server):
    agent = _enroll(server)
    events = [
        {"full_log": f"line {i}", "module": "logcollector", "location": "/var/log/x.log"}
        for i in range(5)
    ]
    first = server.post("/api/agent/v1/events", **_batch(events, 1, agent))
    again = server.post("/api/agent/v1/events", **_batch(events, 1, agent))
    assert first.json() == {"sequence": 1, "stored": 5, "duplicate": False}
    assert again.json() == {"sequence": 1, "stored": 0, "duplicate": True}
    found = server.get("/api/v1/events", headers=server.admin_headers).json()
    assert found["total"] == 5
    assert {e["source_id"] for e in found["items"]} == {agent["X-Puffin-Agent"]}


def test_bad_batches_are_refused_with_reasons_and_nothing_is_stored(server):
    agent = _enroll(server)
    corrupt = server.post(
        "/api/agent/v1/events",
        content=b"\x1f\x8bnot gzip",
        headers={**agent, "Content-Encoding": "gzip", "X-Puffin-Sequence": "1"},
    )
    assert corrupt.status_code == 422
    assert "gzip" in corrupt.json()["detail"]
    not_json = server.post(
        "/api/agent/v1/events",
        content=gzip.compress(b"{nope"),
        headers={**agent, "Content-Encoding": "gzip", "X-Puffin-Sequence": "2"},
    )
    assert not_json.status_code == 422
    not_objects = server.post("/api/agent/v1/events", **_batch([{"ok": 1}, "text"], 3, agent))
    assert not_objects.status_code == 422
    assert "events[1]" in not_objects.json()["detail"]
    bomb = gzip.compress(b"0" * (MAX_DECOMPRESSED_BYTES + 10))
    too_big = server.post(
        "/api/agent/v1/events",
        content=bomb,
        headers={**agent, "Content-Encoding": "gzip", "X-Puffin-Sequence": "4"},
    )
    assert too_big.status_code == 413
    brotli = server.post(
        "/api/agent/v1/events",
        content=b"x",
        headers={**agent, "Content-Encoding": "br", "X-Puffin-Sequence": "5"},
    )
    assert brotli.status_code == 415
    no_sequence = server.post(
        "/api/agent/v1/events",
        content=gzip.compress(b'{"events":[]}'),
        headers={**agent, "Content-Encoding": "gzip"},
    )
    assert no_sequence.status_code == 422
    assert server.get("/api/v1/events", headers=server.admin_headers).json()["total"] == 0


def test_wrong_or_revoked_credentials_are_refused(server):
    agent = _enroll(server)
    wrong = {**agent, "Authorization": "Bearer not-the-credential"}
    assert server.post("/api/agent/v1/events", **_batch([], 1, wrong)).status_code == 401
    assert (
        server.post(
            "/api/agent/v1/events",
            **_batch([], 1, {"X-Puffin-Agent": "x", "Authorization": "Bearer y"}),
        ).status_code
        == 401
    )
    assert server.post("/api/agent/v1/events", **_batch([], 1, {})).status_code == 401
    assert server.post("/api/agent/v1/events", **_batch([], 2, agent)).status_code == 200
    server.post(f"/api/v1/agents/{agent['X-Puffin-Agent']}/revoke", headers=server.admin_headers)
    assert server.post("/api/agent/v1/events", **_batch([], 3, agent)).status_code == 401


def test_enrolment_token_limits_are_enforced(server):
    token = server.post(
        "/api/v1/enrollment-tokens", json={"max_uses": 1}, headers=server.admin_headers
    ).json()["token"]
    assert (
        server.post("/api/agent/v1/enroll", json={"token": token, "name": "a"}).status_code == 201
    )
    used_up = server.post("/api/agent/v1/enroll", json={"token": token, "name": "b"})
    assert used_up.status_code == 401
    assert "used up" in used_up.json()["detail"]
    unknown = server.post("/api/agent/v1/enroll", json={"token": "pfe_" + "x" * 30, "name": "c"})
    assert unknown.status_code == 401


def test_keepalive_delivers_config_and_tasks_and_takes_results(server):
    agent = _enroll(server)
    agent_id = agent["X-Puffin-Agent"]
    server.put(
        "/api/v1/agent-groups",
        json={"name": "default", "config": {"fim": {"paths": ["/etc"]}}},
        headers=server.admin_headers,
    )
    task = server.post(
        f"/api/v1/agents/{agent_id}/tasks",
        json={"action": "kill_process", "parameters": {"pid": 4242}},
        headers=server.admin_headers,
    ).json()
    reply = server.post(
        "/api/agent/v1/keepalive",
        json={"health": {"queued": 3}, "config_hash": ""},
        headers=agent,
    ).json()
    assert reply["config"] == {"fim": {"paths": ["/etc"]}}
    assert [t["id"] for t in reply["tasks"]] == [task["id"]]
    second = server.post(
        "/api/agent/v1/keepalive",
        json={
            "config_hash": reply["config_hash"],
            "task_results": [
                {"task_id": task["id"], "ok": False, "result": {"error": "no such process"}}
            ],
        },
        headers=agent,
    ).json()
    assert second["config"] is None
    assert second["tasks"] == []
    tasks = server.get(f"/api/v1/agents/{agent_id}/tasks", headers=server.admin_headers).json()
    assert tasks[0]["status"] == "failed"
    assert tasks[0]["result"] == {"error": "no such process"}
    flush_contacts(server.app.state.puffin)  # call-ins are written every few seconds
    detail = server.get(f"/api/v1/agents/{agent_id}", headers=server.admin_headers).json()
    assert detail["status"] == "active"
    assert detail["health"] == {"queued": 3}


def test_inventory_is_kept_on_the_agent(server):
    agent = _enroll(server)
    response = server.post(
        "/api/agent/v1/inventory",
        json={"os": {"name": "Debian"}, "packages": [{"name": "bash"}]},
        headers=agent,
    )
    assert response.status_code == 204
    detail = server.get(
        f"/api/v1/agents/{agent['X-Puffin-Agent']}", headers=server.admin_headers
    ).json()
    assert detail["inventory"]["os"] == {"name": "Debian"}
    bogus = server.post(
        "/api/agent/v1/keepalive",
        json={"task_results": [{"task_id": str(uuid.uuid4()), "ok": True}]},
        headers=agent,
    )
    assert bogus.status_code == 404


def test_windows_events_are_flattened_at_ingest(server):
    agent = _enroll(server)
    record = {
        "Event": {
            "System": {
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
                "EventID": 1,
                "Channel": "Microsoft-Windows-Sysmon/Operational",
                "Computer": "ws01",
                "EventRecordID": 42,
                "TimeCreated": {"#attributes": {"SystemTime": "2026-11-22T10:00:00.000000Z"}},
            },
            "EventData": {
                "Image": "C:\\\\Windows\\\\System32\\\\cmd.exe",
                "CommandLine": "cmd /c whoami",
            },
        }
    }
    ack = server.post("/api/agent/v1/events", **_batch([record], 1, agent))
    assert ack.json()["stored"] == 1
    stored = server.get("/api/v1/events", headers=server.admin_headers).json()["items"][0]
    assert stored["data"]["EventID"] == 1
    assert stored["data"]["CommandLine"] == "cmd /c whoami"
    assert stored["event_time"].startswith("2026-11-22T10:00:00")
    broken = server.post("/api/agent/v1/events", **_batch([{"Event": {"EventData": {}}}], 2, agent))
    assert broken.status_code == 422
    assert "System" in broken.json()["detail"]


def test_text_lines_from_log_files_are_decoded_at_ingest(server):
    agent = _enroll(server)
    line = (
        "Nov 22 10:14:01 web1 sshd[811]: Failed password for root from 203.0.113.5 port 50122 ssh2"
    )
    events = [
        {"module": "logcollector", "location": "/var/log/auth.log", "full_log": line},
        {"module": "logcollector", "location": "/var/log/app.json", "full_log": '{"a": 1}', "a": 1},
    ]
    ack = server.post("/api/agent/v1/events", **_batch(events, 1, agent))
    assert ack.json()["stored"] == 2
    stored = server.get("/api/v1/events", headers=server.admin_headers).json()["items"]
    decoded = next(e for e in stored if e["location"] == "/var/log/auth.log")["data"]
    assert decoded["decoder"] == "sshd"
    assert decoded["src_ip"] == "203.0.113.5"
    assert decoded["user"] == "root"
    assert decoded["module"] == "logcollector"
    as_json = next(e for e in stored if e["location"] == "/var/log/app.json")["data"]
    assert "decoder" not in as_json


def test_configuration_is_sent_again_only_when_its_hash_changes(server):
    agent = _enroll(server)
    agent_id = agent["X-Puffin-Agent"]

    def keepalive(config_hash: str) -> dict:
        reply = server.post(
            "/api/agent/v1/keepalive", json={"config_hash": config_hash}, headers=agent
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    def put_group(name: str, config: dict) -> None:
        response = server.put(
            "/api/v1/agent-groups",
            json={"name": name, "config": config},
            headers=server.admin_headers,
        )
        assert response.status_code == 200, response.text

    put_group("default", {"logs": ["/var/log/syslog"]})
    first = keepalive("")
    assert first["config"] == {"logs": ["/var/log/syslog"]}
    assert keepalive(first["config_hash"])["config"] is None
    put_group("default", {"logs": ["/var/log/syslog"]})  # saved again, unchanged
    assert keepalive(first["config_hash"])["config"] is None

    put_group("default", {"logs": ["/var/log/syslog", "/var/log/auth.log"]})
    edited = keepalive(first["config_hash"])
    assert edited["config_hash"] != first["config_hash"]
    assert edited["config"] == {"logs": ["/var/log/syslog", "/var/log/auth.log"]}

    put_group("web", {"logs": ["/var/log/nginx/*.log"], "fim": {"paths": ["/srv"]}})
    moved = server.patch(
        f"/api/v1/agents/{agent_id}",
        json={"groups": ["default", "web"]},
        headers=server.admin_headers,
    )
    assert moved.status_code == 200
    regrouped = keepalive(edited["config_hash"])
    assert regrouped["config"] == {
        "logs": ["/var/log/syslog", "/var/log/auth.log", "/var/log/nginx/*.log"],
        "fim": {"paths": ["/srv"]},
    }
    flush_contacts(server.app.state.puffin)
    detail = server.get(f"/api/v1/agents/{agent_id}", headers=server.admin_headers).json()
    assert detail["config_current"] == regrouped["config_hash"]
    assert detail["config_applied"] == edited["config_hash"]  # what it said it applies


def test_events_sent_from_keepalives_are_counted(server):
    import time

    agent = _enroll(server)
    agent_id = agent["X-Puffin-Agent"]
    for sent in (0, 250, 50):
        reply = server.post("/api/agent/v1/keepalive", json={"events_sent": sent}, headers=agent)
        assert reply.status_code == 200
        time.sleep(1.0)
    flush_contacts(server.app.state.puffin)
    detail = server.get(f"/api/v1/agents/{agent_id}", headers=server.admin_headers).json()
    assert detail["events_received"] == 300
    assert detail["event_rate"] > 0
    negative = server.post("/api/agent/v1/keepalive", json={"events_sent": -1}, headers=agent)
    assert negative.status_code == 422


def test_a_group_changed_outside_this_server_reaches_keepalives_after_the_refresh(
    server, monkeypatch
):
    from puffin.endpoint import configs
    from puffin.endpoint.schemas import GroupWrite

    monkeypatch.setattr(configs, "REFRESH_SECONDS", 0.3)
    agent = _enroll(server)
    first = server.post("/api/agent/v1/keepalive", json={"config_hash": ""}, headers=agent).json()
    organisation_id = server.get("/api/v1/agents", headers=server.admin_headers).json()["items"][0][
        "organisation_id"
    ]
    # As `puffin` commands or a second server do: straight to the database, no API call.
    with transaction(server.app.state.puffin.session_factory) as session:
        endpoint_service.put_group(
            session=session,
            organisation_id=uuid.UUID(organisation_id),
            group_in=GroupWrite(name="default", config={"logs": ["/var/log/kern.log"]}),
        )
    time.sleep(0.4)
    reply = server.post(
        "/api/agent/v1/keepalive", json={"config_hash": first["config_hash"]}, headers=agent
    ).json()
    assert reply["config"] == {"logs": ["/var/log/kern.log"]}
    assert reply["config_hash"] != first["config_hash"]
