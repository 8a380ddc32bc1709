"""Agent registry and alerts through the API: enrolment tokens, tasks, triage, statistics."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from puffin.alert import service as alert_service
from puffin.alert.schemas import Detection, Level
from puffin.app import create_app
from puffin.auth import credentials
from puffin.auth.credentials import ThrottlePolicy
from puffin.auth.schemas import ApiKeyCreate
from puffin.core.db import transaction
from puffin.core.errors import Unauthenticated
from puffin.core.settings import Settings
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.schemas import EnrollmentRequest


@pytest.fixture
def admin(tmp_path):
    announced: list[str] = []
    app = create_app(
        Settings(data_dir=tmp_path, environment="test", tls=False), announce=announced.append
    )
    with TestClient(app) as client:
        password = announced[0].split("password: ")[1].strip()
        factory = app.state.puffin.session_factory
        with transaction(factory) as session:
            user = credentials.verify_credentials(
                session=session, username="admin", password=password, policy=ThrottlePolicy()
            )
            info = credentials.open_session(
                session=session, user=user, ip=None, max_age_seconds=600
            )
            key = credentials.create_api_key(
                session=session, principal=info.principal, key_in=ApiKeyCreate(name="tests")
            )
        client.headers["Authorization"] = f"Bearer {key.key}"
        client.app_state = app.state.puffin  # type: ignore[attr-defined]
        client.organisation_id = info.principal.organisation_id  # type: ignore[attr-defined]
        yield client


def _enroll(client, name: str = "web-01") -> uuid.UUID:
    created = client.post(
        "/api/v1/enrollment-tokens", json={"max_uses": 1, "default_group": "linux"}
    )
    assert created.status_code == 201, created.text
    with transaction(client.app_state.session_factory) as session:
        enrolled = endpoint_service.enroll(
            session=session,
            request=EnrollmentRequest(token=created.json()["token"], name=name, os_name="Linux"),
            ip="127.0.0.1",
        )
    return enrolled.agent_id


def test_enrollment_token_is_single_use_and_agent_is_listed(admin):
    agent_id = _enroll(admin)
    agents = admin.get("/api/v1/agents").json()
    assert [a["name"] for a in agents["items"]] == ["web-01"]
    assert agents["items"][0]["status"] == "never connected"
    assert agents["items"][0]["groups"] == ["linux"]
    token = admin.get("/api/v1/enrollment-tokens").json()[0]
    assert token["uses"] == 1
    assert "token" not in token
    detail = admin.get(f"/api/v1/agents/{agent_id}").json()
    assert detail["os_name"] == "Linux"


def test_revoked_agent_credential_is_refused(admin):
    token = admin.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    with transaction(admin.app_state.session_factory) as session:
        enrolled = endpoint_service.enroll(
            session=session, request=EnrollmentRequest(token=token, name="db-01"), ip=None
        )
        endpoint_service.authenticate_agent(
            session=session, agent_id=enrolled.agent_id, credential=enrolled.credential
        )
    revoked = admin.post(f"/api/v1/agents/{enrolled.agent_id}/revoke")
    assert revoked.json()["status"] == "revoked"
    with transaction(admin.app_state.session_factory) as session, pytest.raises(Unauthenticated):
        endpoint_service.authenticate_agent(
            session=session, agent_id=enrolled.agent_id, credential=enrolled.credential
        )


def test_block_ip_task_validates_its_address(admin):
    agent_id = _enroll(admin)
    bad = admin.post(
        f"/api/v1/agents/{agent_id}/tasks",
        json={"action": "block_ip", "parameters": {"ip": "1.2.3"}},
    )
    assert bad.status_code == 422
    assert "ip" in bad.json()["detail"]
    shell = admin.post(
        f"/api/v1/agents/{agent_id}/tasks", json={"action": "run", "parameters": {"cmd": "id"}}
    )
    assert shell.status_code == 422
    good = admin.post(
        f"/api/v1/agents/{agent_id}/tasks",
        json={"action": "block_ip", "parameters": {"ip": "203.0.113.9", "timeout_seconds": 60}},
    )
    assert good.status_code == 201
    assert admin.get(f"/api/v1/agents/{agent_id}/tasks").json()[0]["status"] == "pending"


def test_group_configuration_merges_into_the_agent_config(admin):
    agent_id = _enroll(admin)
    admin.put(
        "/api/v1/agent-groups", json={"name": "linux", "config": {"fim": {"paths": ["/etc"]}}}
    )
    with transaction(admin.app_state.session_factory) as session:
        digest, config = endpoint_service.effective_config(session=session, agent_id=agent_id)
    assert config == {"fim": {"paths": ["/etc"]}}
    # The agent is told about a change by the hash of what it gets, not by a counter:
    # saving the same configuration again changes nothing, a new one changes the hash.
    admin.put(
        "/api/v1/agent-groups", json={"name": "linux", "config": {"fim": {"paths": ["/etc"]}}}
    )
    with transaction(admin.app_state.session_factory) as session:
        same, _ = endpoint_service.effective_config(session=session, agent_id=agent_id)
    admin.put(
        "/api/v1/agent-groups", json={"name": "linux", "config": {"fim": {"paths": ["/srv"]}}}
    )
    with transaction(admin.app_state.session_factory) as session:
        changed, config = endpoint_service.effective_config(session=session, agent_id=agent_id)
    assert same == digest
    assert changed != digest
    assert config == {"fim": {"paths": ["/srv"]}}


def _detect(client, **extra) -> None:
    detection = Detection(
        rule_id="r-ssh",
        rule_title="SSH brute force",
        level=Level.HIGH,
        tags=["attack.credential_access", "attack.t1110.001"],
        event={"src_ip": "198.51.100.7", "full_log": "Failed password for root"},
        dedupe_fields=["src_ip"],
        dedupe_window_seconds=600,
        **extra,
    )
    with transaction(client.app_state.session_factory) as session:
        alert_service.raise_alert(
            session=session, organisation_id=client.organisation_id, detection=detection
        )


def test_repeated_detections_fold_into_one_alert_and_triage_works(admin):
    _detect(admin)
    _detect(admin)
    alerts = admin.get("/api/v1/alerts", params={"level": "high"}).json()
    assert alerts["total"] == 1
    alert = alerts["items"][0]
    assert alert["hits"] == 2
    assert alert["tactics"] == ["credential-access"]
    assert alert["techniques"] == ["T1110.001"]
    assert alert["severity"] == 12
    updated = admin.patch(f"/api/v1/alerts/{alert['id']}", json={"status": "acknowledged"})
    assert updated.json()["status"] == "acknowledged"
    admin.post(f"/api/v1/alerts/{alert['id']}/comments", json={"text": "looking"})
    detail = admin.get(f"/api/v1/alerts/{alert['id']}").json()
    assert [c["text"] for c in detail["comments"]] == ["looking"]
    assert detail["event"]["src_ip"] == "198.51.100.7"
    stats = admin.get("/api/v1/alerts/stats").json()
    assert sum(n for _, n in stats["over_time"]) == 1
    assert stats["top_rules"] == [{"key": "SSH brute force", "count": 1}]
    trail = admin.get("/api/v1/audit", params={"object_type": "alert"}).json()
    assert {e["action"] for e in trail["items"]} == {"update", "comment"}


def test_bad_alert_filters_are_4xx(admin):
    assert admin.get("/api/v1/alerts", params={"level": "apocalyptic"}).status_code == 422
    assert admin.get(f"/api/v1/alerts/{uuid.uuid4()}").status_code == 404
    assert admin.get("/api/v1/alerts/not-a-uuid").status_code == 422


def test_events_search_histogram_and_field_filters(admin):
    from puffin.ingest.store import NewEvent

    store = admin.app_state.extras["event_store"]
    source = uuid.uuid4()
    store.append(
        organisation_id=admin.organisation_id,
        source_id=source,
        events=[
            NewEvent(data={"program": "sshd", "user": "root"}, full_log="Failed password for root"),
            NewEvent(data={"program": "sudo", "user": "bob"}, full_log="bob : COMMAND=/bin/ls"),
        ],
    )
    store.append(
        organisation_id=uuid.uuid4(), source_id=source, events=[NewEvent(data={}, full_log="other")]
    )
    everything = admin.get("/api/v1/events").json()
    assert everything["total"] == 2
    by_field = admin.get("/api/v1/events", params={"field": "program=sudo"}).json()
    assert [e["data"]["user"] for e in by_field["items"]] == ["bob"]
    by_text = admin.get("/api/v1/events", params={"text": "failed password"}).json()
    assert by_text["total"] == 1
    histogram = admin.get("/api/v1/events/histogram", params={"buckets": 10}).json()
    assert sum(b["count"] for b in histogram["buckets"]) == 2
    one = admin.get(f"/api/v1/events/{everything['items'][0]['id']}")
    assert one.status_code == 200
    assert admin.get("/api/v1/events", params={"field": "no-equals"}).status_code == 422
    assert admin.get("/api/v1/events/999999").status_code == 404
    assert admin.get("/api/v1/events/0").status_code == 422


def test_syslog_listener_starts_with_the_server(tmp_path):
    import socket
    import time

    settings = Settings(
        data_dir=tmp_path, environment="test", tls=False, syslog_udp_port=0, syslog_host="127.0.0.1"
    )
    app = create_app(settings, announce=lambda _: None)
    with TestClient(app):
        background = app.state.puffin.extras["background"]
        port = background.syslog_ports["udp"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(
                b"<38>Nov 22 09:15:01 fw01 sshd[811]: Accepted password for bob",
                ("127.0.0.1", port),
            )
        store = app.state.puffin.extras["event_store"]
        for _ in range(100):
            if store.last_id():
                break
            time.sleep(0.05)
        events = store.read_after(0)
    assert [e.full_log for e in events] == [
        "<38>Nov 22 09:15:01 fw01 sshd[811]: Accepted password for bob"
    ]


def _syslog_source(app) -> dict:
    from puffin.auth import service as auth_service
    from puffin.core.pagination import PageParams

    with transaction(app.state.puffin.session_factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
        page = endpoint_service.list_agents(
            session=session, organisation_id=org.id, page=PageParams(), text="syslog-"
        )
    return page.items[0].model_dump() if page.items else {}


def test_a_syslog_sender_is_listed_like_an_agent_and_its_last_contact_moves(tmp_path):
    import socket
    import time

    settings = Settings(
        data_dir=tmp_path, environment="test", tls=False, syslog_udp_port=0, syslog_host="127.0.0.1"
    )
    app = create_app(settings, announce=lambda _: None)

    def send_and_wait(line: bytes, received: int) -> dict:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(line, ("127.0.0.1", background.syslog_ports["udp"]))
        for _ in range(200):
            source = _syslog_source(app)
            if source.get("events_received") == received:
                return source
            time.sleep(0.05)
        raise AssertionError(f"the sender never counted {received} events: {source}")

    with TestClient(app):
        background = app.state.puffin.extras["background"]
        background.receiver.contact_seconds = 0  # note every flush, not every 5 s
        first = send_and_wait(b"<38>Nov 22 09:15:01 fw01 sshd[811]: first", 1)
        time.sleep(1.1)
        second = send_and_wait(b"<38>Nov 22 09:15:03 fw01 sshd[811]: second", 2)
    assert first["name"] == "syslog-127.0.0.1"
    assert first["kind"] == "syslog"
    assert first["status"] == "active"
    assert second["last_seen_at"] > first["last_seen_at"]
    assert second["event_rate"] > 0


def test_alert_stream_pushes_new_alerts_as_server_sent_events(admin):
    import threading
    import time

    errors: list[BaseException] = []

    def later() -> None:
        time.sleep(0.8)
        try:
            _detect(admin)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=later)
    thread.start()
    with admin.stream("GET", "/api/v1/alerts/stream", params={"max_seconds": 2.5}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    thread.join()
    assert errors == []
    assert "event: alert" in body
    assert "SSH brute force" in body
