"""Enrolment end to end over real HTTPS on loopback: `puffin agent-token create` prints a
token and the fingerprint of the certificate the server really presents; `puffin agent
enroll` refuses to trust a certificate nobody confirmed; and an agent that enrols again
(with the same token, or a console re-enrol token and an empty outbox) has its new
batches stored, never dropped as repeats of the batches it sent before."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from tests.loopback import free_port, serving_https
from typer.testing import CliRunner

from puffin.agent import runner as agent_runner
from puffin.agent import state as agent_state
from puffin.agent.cli import app as agent_cli
from puffin.app import create_app
from puffin.auth import service as auth_service
from puffin.cli.main import build_app
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.core.tls import ensure_certificate, fingerprint_of_file
from puffin.endpoint import service as endpoint_service
from puffin.ingest.store import EventQuery

cli = CliRunner()


@dataclass
class LiveServer:
    """A Puffin server on a loopback port over HTTPS, and its data directory."""

    url: str
    data_dir: Path
    app: object
    fingerprint: str
    cert_file: Path

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_file))

    @property
    def factory(self):  # type: ignore[no-untyped-def]
        return self.app.state.puffin.session_factory  # type: ignore[attr-defined]

    def organisation_id(self) -> uuid.UUID:
        with transaction(self.factory) as session:
            org = auth_service.get_organisation_by_slug(session=session, slug="default")
            assert org is not None
            return org.id

    def stored_lines(self, agent_id: str) -> list[str]:
        store = self.app.state.puffin.extras["event_store"]  # type: ignore[attr-defined]
        query = EventQuery(organisation_id=self.organisation_id(), source_id=uuid.UUID(agent_id))
        return sorted(event.full_log for event in store.search(query, limit=1000))


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    data_dir = tmp_path / "server"
    data_dir.mkdir()
    paths = ensure_certificate(data_dir, None, None)
    port = free_port()
    app = create_app(
        Settings(data_dir=data_dir, environment="test", tls=True, port=port),
        announce=lambda _: None,
    )
    with serving_https(app, port, paths.cert_file, paths.key_file):
        fingerprint = fingerprint_of_file(paths.cert_file)
        yield LiveServer(f"https://127.0.0.1:{port}", data_dir, app, fingerprint, paths.cert_file)


def _puffin(*args: str):
    return cli.invoke(build_app(list(args)), list(args))


def _create_token(live: LiveServer, *options: str) -> tuple[str, str]:
    """Run `puffin agent-token create`; return the token and the enrol command it printed."""
    result = _puffin(
        "agent-token", "create", "--server", live.url, "--data-dir", str(live.data_dir), *options
    )
    assert result.exit_code == 0, result.output
    token = re.search(r"^(pfe_\S+)$", result.output, re.M).group(1)
    command = next(line for line in result.output.splitlines() if line.startswith("puffin agent"))
    return token, command


def _enroll(live: LiveServer, token: str, state_dir: Path, *options: str):
    words = ["--server", live.url, "--token", token, "--name", "web-01"]
    return cli.invoke(agent_cli, ["enroll", *words, "--state-dir", str(state_dir), *options])


def _deliver(live: LiveServer, state_dir: Path, lines: list[str]) -> str:
    """Open the enrolled agent, queue the lines and deliver them; return the agent id."""
    agent = agent_runner.Agent.open(state_dir, agent_runner.AgentSettings())
    try:
        agent.outbox.add({"module": "logcollector", "full_log": line} for line in lines)
        with agent.http() as http:
            agent.deliver(http)
        assert agent.outbox.counters()["queued"] == 0
        return agent.enrolment.agent_id
    finally:
        agent.close()


def test_agent_token_create_prints_the_token_and_the_served_fingerprint(live):
    token, command = _create_token(
        live, "--expires", "7d", "--max-uses", "2", "--group", "linux", "--name", "web tier"
    )
    assert f"--server {live.url} --token {token} --fingerprint {live.fingerprint}" in command
    listed = _puffin("agent-token", "list", "--data-dir", str(live.data_dir))
    assert token[4:12] in listed.output
    with transaction(live.factory) as session:
        (row,) = endpoint_service.list_enrollment_tokens(
            session=session, organisation_id=live.organisation_id()
        )
    assert (row.name, row.default_group, row.max_uses) == ("web tier", "linux", 2)
    assert abs(row.expires_at - (utcnow() + timedelta(days=7))) < timedelta(minutes=5)

    pasted = command.split()[2:]  # the printed command, run as it is on an endpoint
    state_dir = live.data_dir.parent / "agent"
    enrolled = cli.invoke(agent_cli, [*pasted, "--name", "web-01", "--state-dir", str(state_dir)])
    assert enrolled.exit_code == 0, enrolled.output
    agent_id = _deliver(live, state_dir, ["first line"])
    with transaction(live.factory) as session:
        detail = endpoint_service.get_agent(
            session=session, organisation_id=live.organisation_id(), agent_id=uuid.UUID(agent_id)
        )
    assert detail.groups == ["linux"]

    for bad in ("0", "3y", "400d"):
        refused = _puffin(
            "agent-token", "create", "--expires", bad, "--data-dir", str(live.data_dir)
        )
        assert refused.exit_code == 2, bad
        assert "--expires" in refused.output
    revoked = _puffin("agent-token", "revoke", token[4:12], "--data-dir", str(live.data_dir))
    assert revoked.exit_code == 0, revoked.output
    assert "revoked" in _puffin("agent-token", "list", "--data-dir", str(live.data_dir)).output


def test_enrol_refuses_an_unconfirmed_certificate_and_says_what_to_do(live, tmp_path):
    token, _ = _create_token(live, "--max-uses", "1")
    state_dir = tmp_path / "agent"
    refused = _enroll(live, token, state_dir)
    assert refused.exit_code == 1
    assert live.fingerprint in refused.output
    assert f"--fingerprint {live.fingerprint}" in refused.output
    assert "--accept-fingerprint" in refused.output
    assert not (state_dir / agent_state.ENROLMENT_FILE).exists()
    wrong = _enroll(live, token, state_dir, "--fingerprint", "AB:" * 31 + "AB")
    assert wrong.exit_code == 1
    assert "not the expected" in wrong.output

    accepted = _enroll(live, token, state_dir, "--accept-fingerprint")  # trust on first use
    assert accepted.exit_code == 0, accepted.output
    enrolment, _ = agent_state.load(state_dir)
    assert enrolment.fingerprint == live.fingerprint


def test_enrolling_again_with_the_cli_keeps_new_batches(live, tmp_path):
    token, _ = _create_token(live, "--max-uses", "3")
    state_dir = tmp_path / "agent"
    first = _enroll(live, token, state_dir, "--fingerprint", live.fingerprint)
    assert first.exit_code == 0, first.output
    agent_id = _deliver(live, state_dir, ["before 1", "before 2"])

    again = _enroll(live, token, state_dir, "--fingerprint", live.fingerprint)
    assert again.exit_code == 0, again.output
    assert _deliver(live, state_dir, ["after 1"]) == agent_id  # the same agent, enrolled anew

    lost = tmp_path / "reinstalled"  # the endpoint was reinstalled: no outbox any more
    third = _enroll(live, token, lost, "--fingerprint", live.fingerprint)
    assert third.exit_code == 0, third.output
    assert _deliver(live, lost, ["after reinstall"]) == agent_id
    assert live.stored_lines(agent_id) == ["after 1", "after reinstall", "before 1", "before 2"]


def test_a_console_reenrol_token_enrols_the_agent_again_and_its_batches_are_kept(live, tmp_path):
    token, _ = _create_token(live, "--max-uses", "1")
    state_dir = tmp_path / "agent"
    assert _enroll(live, token, state_dir, "--fingerprint", live.fingerprint).exit_code == 0
    agent_id = _deliver(live, state_dir, ["before"])
    with transaction(live.factory) as session:
        again = endpoint_service.reenroll_agent(
            session=session,
            organisation_id=live.organisation_id(),
            agent_id=uuid.UUID(agent_id),
            server_fingerprint=live.fingerprint,
        )
    fresh = tmp_path / "fresh"
    enrolled = _enroll(live, again.token, fresh, "--fingerprint", live.fingerprint)
    assert enrolled.exit_code == 0, enrolled.output
    assert _deliver(live, fresh, ["after"]) == agent_id
    assert live.stored_lines(agent_id) == ["after", "before"]
    other = _enroll(live, again.token, tmp_path / "other", "--fingerprint", live.fingerprint)
    assert other.exit_code == 1  # a re-enrol token is for one use


def test_a_batch_the_server_refuses_is_quarantined_not_resent_forever(live, tmp_path):
    import httpx

    from puffin.ingest.batches import MAX_EVENT_BYTES

    token, _ = _create_token(live, "--max-uses", "1")
    state_dir = tmp_path / "agent"
    assert _enroll(live, token, state_dir, "--fingerprint", live.fingerprint).exit_code == 0
    poison = "x" * (MAX_EVENT_BYTES + 1)  # the server answers 413 for this event
    agent_id = _deliver(live, state_dir, ["good 1", poison, "good 2", "good 3"])

    agent = agent_runner.Agent.open(state_dir, agent_runner.AgentSettings())
    try:
        counters = agent.outbox.counters()
        (letter,) = agent.outbox.dead_letters()
        with agent.http() as http:
            assert agent.deliver(http) == 0  # nothing is left to send again
    finally:
        agent.close()
    assert counters["quarantined"] == 1
    assert counters["queued"] == 0
    assert letter["status"] == 413
    assert letter["event"]["full_log"] == poison
    stored = live.stored_lines(agent_id)
    assert [line for line in stored if line.startswith("good")] == ["good 1", "good 2", "good 3"]
    (notice,) = [line for line in stored if "refused batch" in line]
    assert "413" in notice
    metrics = httpx.get(f"{live.url}/metrics", verify=live.tls_context()).text
    refused = [
        line
        for line in metrics.splitlines()
        if line.startswith("puffin_http_requests_total")
        and 'route="/api/agent/v1/events"' in line
        and 'status="413"' in line
    ]
    assert refused, "the server counts the refused batch"
