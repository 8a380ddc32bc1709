"""The Agents pages: enrolment tokens shown once, the registry, detail and response tasks."""

from __future__ import annotations

import re
import uuid

from tests.integration.test_console_pages import (
    PASSWORD,
    csrf_of,
    default_organisation,
    make_member,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.auth.schemas import Role
from puffin.core.db import transaction
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.schemas import EnrollmentRequest


def _token(client) -> str:
    created = client.post(
        "/agents/tokens",
        data={
            "csrf_token": csrf_of(client),
            "default_group": "linux",
            "expires_in_hours": "2",
            "max_uses": "1",
        },
    )
    assert created.status_code == 200, created.text
    assert "puffin agent enroll --server https://testserver --token" in created.text
    return re.search(r"(pfe_[A-Za-z0-9_-]+)", created.text).group(1)


def test_admin_creates_a_token_an_agent_enrols_and_appears(server):  # noqa: F811
    client = signed_in(server)
    token = _token(client)
    with transaction(server.factory) as session:
        enrolled = endpoint_service.enroll(
            session=session, request=EnrollmentRequest(token=token, name="db-01"), ip="10.0.0.5"
        )
    listing = client.get("/agents").text
    assert "db-01" in listing
    assert "never connected" in listing
    assert token not in listing  # the token itself is never shown again
    detail = client.get(f"/agents/{enrolled.agent_id}")
    assert detail.status_code == 200
    assert "10.0.0.5" in detail.text
    bad = client.post(
        "/agents/tokens", data={"csrf_token": csrf_of(client), "expires_in_hours": "0"}
    )
    assert bad.status_code == 422


def test_an_analyst_queues_a_block_and_bad_addresses_are_refused(server):  # noqa: F811
    org = default_organisation(server)
    admin = signed_in(server)
    token = _token(admin)
    with transaction(server.factory) as session:
        agent = endpoint_service.enroll(
            session=session, request=EnrollmentRequest(token=token, name="web-01"), ip=None
        )
    make_member(server, org, "ann", Role.ANALYST)
    analyst = signed_in(server, "ann", PASSWORD)
    csrf = csrf_of(analyst)
    url = f"/agents/{agent.agent_id}/tasks"
    bad = analyst.post(url, data={"csrf_token": csrf, "action": "block_ip", "ip": "999.1.1.1"})
    assert bad.status_code == 422
    assert "ip" in bad.text
    good = analyst.post(
        url,
        data={
            "csrf_token": csrf,
            "action": "block_ip",
            "ip": "203.0.113.9",
            "timeout_seconds": "60",
        },
    )
    assert good.status_code == 303
    assert "203.0.113.9" in analyst.get(f"/agents/{agent.agent_id}").text
    refused = analyst.post(f"/agents/{agent.agent_id}/revoke", data={"csrf_token": csrf})
    assert refused.status_code == 403
    revoked = admin.post(f"/agents/{agent.agent_id}/revoke", data={"csrf_token": csrf_of(admin)})
    assert revoked.status_code == 303
    assert "revoked" in admin.get("/agents").text


def test_read_only_users_see_agents_but_cannot_act(server):  # noqa: F811
    org = default_organisation(server)
    make_member(server, org, "rita", Role.READ_ONLY)
    reader = signed_in(server, "rita", PASSWORD)
    assert reader.get("/agents").status_code == 200
    assert "New enrolment token" not in reader.get("/agents").text
    assert reader.post("/agents/tokens", data={"csrf_token": csrf_of(reader)}).status_code == 403
    assert reader.get(f"/agents/{uuid.uuid4()}").status_code == 404
