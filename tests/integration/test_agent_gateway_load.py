"""The agent gateway under load: a database too busy to answer in time (its write lock
held, its connection pool exhausted) is answered 503 with Retry-After and logged once,
never 500; the agent waits that long and keeps its events; and keep-alives do not write
the agent's row each, their call-ins are written together by the flusher."""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.integration.test_agent_enrolment import LiveServer, _create_token
from tests.loopback import free_port, serving_https
from typer.testing import CliRunner

from puffin.agent import runner as agent_runner
from puffin.agent.cli import app as agent_cli
from puffin.api.agent_gateway import flush_contacts
from puffin.api.errors import RETRY_AFTER_SECONDS
from puffin.app import create_app
from puffin.core import db
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.core.tls import ensure_certificate, fingerprint_of_file
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.contacts import contact_book
from puffin.endpoint.schemas import EnrollmentTokenCreate, TaskCreate

# SQLite's write lock and busy timeout are what these tests hold and shorten.
PUFFIN_BACKENDS = ("sqlite",)


@pytest.fixture
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give up on a held lock or a full pool after a fraction of a second, not 10 s."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
    monkeypatch.setattr(db, "POOL_TIMEOUT_SECONDS", 0.3)


@pytest.fixture
def app(tmp_path: Path, short_waits: None) -> Iterator[TestClient]:
    application = create_app(
        Settings(data_dir=tmp_path, environment="test", tls=False), announce=lambda _: None
    )
    with TestClient(application) as client:
        yield client


def _state(client: TestClient):  # type: ignore[no-untyped-def]
    return client.app.state.puffin  # type: ignore[attr-defined]


def _enrol(client: TestClient) -> dict[str, str]:
    state = _state(client)
    with transaction(state.session_factory) as session:
        org = endpoint_service.create_enrollment_token(
            session=session,
            organisation_id=_default_org(state),
            token_in=EnrollmentTokenCreate(name="load", max_uses=1),
            server_fingerprint=None,
        )
    body = client.post("/api/agent/v1/enroll", json={"token": org.token, "name": "busy-01"}).json()
    return {"X-Puffin-Agent": body["agent_id"], "Authorization": f"Bearer {body['credential']}"}


def _default_org(state) -> uuid.UUID:  # type: ignore[no-untyped-def]
    from puffin.auth import service as auth_service

    with transaction(state.session_factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
    assert org is not None
    return org.id


def _agent_row(client: TestClient, agent: dict[str, str]):  # type: ignore[no-untyped-def]
    state = _state(client)
    with transaction(state.session_factory) as session:
        return endpoint_service.get_agent(
            session=session,
            organisation_id=_default_org(state),
            agent_id=uuid.UUID(agent["X-Puffin-Agent"]),
        )


def _assert_busy(response, caplog: pytest.LogCaptureFixture, secret: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, response.text
    low, high = RETRY_AFTER_SECONDS
    assert low <= int(response.headers["retry-after"]) <= high
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 503
    assert problem["title"] == "Service unavailable"
    busy = [r for r in caplog.records if "database busy" in r.getMessage()]
    assert len(busy) == 1
    assert busy[0].levelno == logging.WARNING
    assert secret not in busy[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_held_write_lock_is_answered_503_with_retry_after(app, tmp_path, caplog):
    agent = _enrol(app)
    state = _state(app)
    with transaction(state.session_factory) as session:
        task = endpoint_service.create_task(
            session=session,
            organisation_id=_default_org(state),
            agent_id=uuid.UUID(agent["X-Puffin-Agent"]),
            task_in=TaskCreate(action="kill_process", parameters={"pid": 4242}),
        )
    holder = sqlite3.connect(tmp_path / "puffin.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        with caplog.at_level(logging.WARNING):
            refused = app.post("/api/agent/v1/keepalive", json={}, headers=agent)
        _assert_busy(refused, caplog, agent["Authorization"].split()[1])
    finally:
        holder.rollback()
        holder.close()
    served = app.post("/api/agent/v1/keepalive", json={}, headers=agent)
    assert served.status_code == 200
    assert [t["id"] for t in served.json()["tasks"]] == [str(task.id)]  # not lost


def test_an_exhausted_connection_pool_is_answered_503(app, caplog):
    agent = _enrol(app)
    assert app.post("/api/agent/v1/keepalive", json={}, headers=agent).status_code == 200
    engine = _state(app).engine
    held = []
    try:
        while engine.pool.checkedout() < engine.pool.size() + engine.pool._max_overflow:
            held.append(engine.connect())
        with caplog.at_level(logging.WARNING):
            refused = app.post("/api/agent/v1/keepalive", json={}, headers=agent)
        _assert_busy(refused, caplog, agent["Authorization"].split()[1])
    finally:
        for connection in held:
            connection.close()
    assert app.post("/api/agent/v1/keepalive", json={}, headers=agent).status_code == 200


def test_keepalives_are_written_together_by_the_flusher(app, tmp_path):
    agent = _enrol(app)
    holder = sqlite3.connect(tmp_path / "puffin.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # no keep-alive may need the write lock
        for sent in (10, 20, 30):
            report = {"events_sent": sent, "health": {"queued": sent}, "config_hash": "abc"}
            reply = app.post("/api/agent/v1/keepalive", json=report, headers=agent)
            assert reply.status_code == 200, reply.text
        assert contact_book(_state(app)).pending() == 3
        assert flush_contacts(_state(app)) == 0  # the flush cannot write yet: kept for later
    finally:
        holder.rollback()
        holder.close()
    assert _agent_row(app, agent).status == "never connected"
    assert flush_contacts(_state(app)) == 3
    row = _agent_row(app, agent)
    assert row.status == "active"
    assert row.events_received == 60
    assert row.health == {"queued": 30}
    assert row.config_applied == "abc"
    assert row.ip == "testclient"


def test_the_flusher_writes_call_ins_within_seconds(app):
    agent = _enrol(app)
    assert app.post("/api/agent/v1/keepalive", json={}, headers=agent).status_code == 200
    deadline = time.monotonic() + 60  # a bound for a loaded machine, not a timing check
    while _agent_row(app, agent).status != "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _agent_row(app, agent).status == "active"


def test_call_ins_still_noted_are_written_on_shutdown(tmp_path):
    application = create_app(
        Settings(data_dir=tmp_path, environment="test", tls=False), announce=lambda _: None
    )
    contact_book(application.state.puffin).interval = 3600.0  # no periodic flush
    with TestClient(application) as client:
        agent = _enrol(client)
        reply = client.post("/api/agent/v1/keepalive", json={"events_sent": 5}, headers=agent)
        assert reply.status_code == 200
        assert _agent_row(client, agent).status == "never connected"
    with TestClient(application) as client:  # the lifespan ended and started again
        row = _agent_row(client, agent)
    assert row.status == "active"
    assert row.events_received == 5


def test_the_agent_waits_as_told_and_keeps_its_events(tmp_path, short_waits):
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    paths = ensure_certificate(data_dir, None, None)
    port = free_port()
    application = create_app(
        Settings(data_dir=data_dir, environment="test", tls=True, port=port),
        announce=lambda _: None,
    )
    with serving_https(application, port, paths.cert_file, paths.key_file):
        live = LiveServer(
            f"https://127.0.0.1:{port}",
            data_dir,
            application,
            fingerprint_of_file(paths.cert_file),
            paths.cert_file,
        )
        _, command = _create_token(live)
        state_dir = tmp_path / "agent"
        enrolled = CliRunner().invoke(
            agent_cli, [*command.split()[2:], "--name", "web-01", "--state-dir", str(state_dir)]
        )
        assert enrolled.exit_code == 0, enrolled.output
        agent = agent_runner.Agent.open(state_dir, agent_runner.AgentSettings())
        try:
            agent.outbox.add({"module": "logcollector", "full_log": f"line {i}"} for i in range(3))
            holder = sqlite3.connect(data_dir / "events.db", isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")  # the event store is busy
                with agent.http() as http:
                    now = time.monotonic()
                    agent._try_deliver(http, now)
            finally:
                holder.rollback()
                holder.close()
            low, high = RETRY_AFTER_SECONDS
            assert low <= agent._next_send - now <= high  # the server's Retry-After
            assert "503" in (agent.last_delivery_error or "")
            assert agent.outbox.counters()["queued"] == 3
            with agent.http() as http:
                agent._try_deliver(http, time.monotonic())
            assert agent.outbox.counters()["queued"] == 0
            agent_id = agent.enrolment.agent_id
        finally:
            agent.close()
        assert live.stored_lines(agent_id) == ["line 0", "line 1", "line 2"]


def test_the_writer_stores_a_cut_off_batch_and_goes_on(tmp_path):
    from puffin.ingest.batches import to_new_events
    from puffin.ingest.decoders import Decoders
    from puffin.ingest.store import EventQuery, EventStore, PendingBatch
    from puffin.ingest.writer import GroupCommitWriter

    store = EventStore(db.make_engine(f"sqlite:///{tmp_path / 'events.db'}"))
    store.create_schema()
    org, source = uuid.uuid4(), uuid.uuid4()

    def batch(sequence: int) -> PendingBatch:
        events = to_new_events([{"full_log": f"line {sequence}"}], decode=Decoders().decode)
        return PendingBatch(organisation_id=org, source_id=source, sequence=sequence, events=events)

    writer = GroupCommitWriter(store)
    cut_off = writer.submit(batch(1))
    assert cut_off.cancel()  # the request waiting for it was cancelled (server stopping)
    writer.start()
    try:
        assert writer.submit(batch(2)).result(timeout=60).stored == 1  # the writer lives on
    finally:
        writer.stop()
    stored = store.search(EventQuery(organisation_id=org, source_id=source), limit=10)
    assert sorted(event.full_log for event in stored) == ["line 1", "line 2"]
    store.engine.dispose()
