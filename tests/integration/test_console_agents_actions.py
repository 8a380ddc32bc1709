"""The Agents pages' buttons: re-enrol, revoke and delete an agent, revoke an enrolment
token — each refused without the form's CSRF token or to users below admin, and each
written to the audit trail; and what an agent reports (events sent, health, inventory,
FIM state) shown on the list and the detail page."""

from __future__ import annotations

import re
import time
import uuid

import pytest
from tests.integration.test_console_pages import (
    PASSWORD,
    csrf_of,
    default_organisation,
    make_member,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.api.agent_gateway import flush_contacts
from puffin.auth.schemas import Role
from puffin.core.db import transaction
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.schemas import EnrollmentTokenCreate


def _enrolled(server, name: str = "web-01") -> tuple[dict[str, str], uuid.UUID, str]:  # noqa: F811
    """Enrol an agent through the gateway; return its headers, its token's id and token."""
    org = default_organisation(server)
    with transaction(server.factory) as session:
        created = endpoint_service.create_enrollment_token(
            session=session,
            organisation_id=org,
            token_in=EnrollmentTokenCreate(name="for tests", max_uses=5),
            server_fingerprint=None,
        )
    enrolled = server.client().post(
        "/api/agent/v1/enroll", json={"token": created.token, "name": name, "os_name": "Linux"}
    )
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    headers = {"X-Puffin-Agent": body["agent_id"], "Authorization": f"Bearer {body['credential']}"}
    return headers, created.id, created.token


def _keepalive(server, agent: dict[str, str], **report) -> int:  # noqa: F811
    return server.client().post("/api/agent/v1/keepalive", json=report, headers=agent).status_code


def _buttons(agent_id: str, token_id: uuid.UUID) -> list[str]:
    return [
        f"/agents/{agent_id}/reenroll",
        f"/agents/{agent_id}/revoke",
        f"/agents/{agent_id}/delete",
        f"/agents/tokens/{token_id}/revoke",
    ]


@pytest.mark.parametrize("role", [Role.READ_ONLY, Role.ANALYST])
def test_users_below_admin_cannot_press_the_registry_buttons(server, role):  # noqa: F811
    agent, token_id, _ = _enrolled(server)
    agent_id = agent["X-Puffin-Agent"]
    make_member(server, default_organisation(server), "someone", role)
    user = signed_in(server, "someone", PASSWORD)
    csrf = csrf_of(user)
    for path in _buttons(agent_id, token_id):
        assert user.post(path, data={"csrf_token": csrf}).status_code == 403, path
    page = user.get(f"/agents/{agent_id}").text
    assert "Re-enrol" not in page
    assert "Delete" not in page
    assert _keepalive(server, agent) == 200  # still enrolled, credential still good


def test_the_buttons_need_the_forms_csrf_token(server):  # noqa: F811
    agent, token_id, _ = _enrolled(server)
    admin = signed_in(server)
    for path in _buttons(agent["X-Puffin-Agent"], token_id):
        for data in ({}, {"csrf_token": "forged"}):
            assert admin.post(path, data=data).status_code == 403, path
    assert _keepalive(server, agent) == 200
    flush_contacts(server.app.state.puffin)  # call-ins are written every few seconds
    listing = admin.get("/agents").text
    assert "1 active" in listing
    assert "0 revoked" in listing
    assert f"/agents/tokens/{token_id}/revoke" in listing  # the token is still usable


def test_reenrol_revoke_and_delete_work_and_are_audited(server):  # noqa: F811
    agent, token_id, secret = _enrolled(server, "web-01")
    agent_id = agent["X-Puffin-Agent"]
    admin = signed_in(server)

    page = admin.post(f"/agents/{agent_id}/reenroll", data={"csrf_token": csrf_of(admin)})
    assert page.status_code == 200
    token = re.search(r"(pfe_[A-Za-z0-9_-]+)", page.text).group(1)
    assert "--name web-01" in page.text
    assert _keepalive(server, agent) == 401  # the old credential is refused at once
    again = server.client().post("/api/agent/v1/enroll", json={"token": token, "name": "web-01"})
    assert again.status_code == 201
    assert again.json()["agent_id"] == agent_id
    fresh = {"X-Puffin-Agent": agent_id, "Authorization": f"Bearer {again.json()['credential']}"}
    assert _keepalive(server, fresh) == 200
    assert "2 enrolments" in admin.get(f"/agents/{agent_id}").text

    revoked = admin.post(f"/agents/{agent_id}/revoke", data={"csrf_token": csrf_of(admin)})
    assert revoked.status_code == 303
    assert _keepalive(server, fresh) == 401

    listing = admin.get("/agents").text
    assert f"/agents/tokens/{token_id}/revoke" in listing
    gone = admin.post(f"/agents/tokens/{token_id}/revoke", data={"csrf_token": csrf_of(admin)})
    assert gone.status_code == 303
    assert f"/agents/tokens/{token_id}/revoke" not in admin.get("/agents").text
    refused = server.client().post("/api/agent/v1/enroll", json={"token": secret, "name": "web-02"})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]

    deleted = admin.post(f"/agents/{agent_id}/delete", data={"csrf_token": csrf_of(admin)})
    assert deleted.status_code == 303
    assert admin.get(f"/agents/{agent_id}").status_code == 404
    assert "web-01" not in admin.get("/agents").text

    trail = admin.get("/admin/audit").text
    for summary in (
        "revoked agent web-01",
        "created enrolment token",
        "agent web-01 enrolled",
        "revoked enrolment token",
        "deleted agent web-01",
    ):
        assert summary in trail, summary


def test_the_pages_show_events_sent_health_inventory_and_fim(server):  # noqa: F811
    agent, _, _ = _enrolled(server, "db-01")
    agent_id = agent["X-Puffin-Agent"]
    health = {
        "queued": 7,
        "sent": 600,
        "quarantined": 2,
        "version": "9.9.9",
        "collectors": {
            "fim": {
                "events": 3,
                "errors": 1,
                "last_error": "cannot read /etc/shadow",
                "state": {"files": 42, "paths": ["/etc", "/srv/app"], "realtime": ["/etc"]},
            }
        },
    }
    assert _keepalive(server, agent) == 200
    time.sleep(1.1)  # the rate is events over the time since the last keep-alive
    assert _keepalive(server, agent, events_sent=600, health=health) == 200
    inventory = {"os": {"name": "Debian GNU/Linux", "version": "12"}}
    stored = server.client().post("/api/agent/v1/inventory", json=inventory, headers=agent)
    assert stored.status_code == 204
    flush_contacts(server.app.state.puffin)  # call-ins are written every few seconds

    admin = signed_in(server)
    row = re.search(
        r"<tr>\s*<td><a href=\"/agents/" + agent_id + r"\">.*?</tr>",
        admin.get("/agents").text,
        re.S,
    ).group(0)
    assert ">600</td>" in row
    rate = re.search(r"([0-9.]+)/min", row)
    assert rate is not None
    assert float(rate.group(1)) > 0

    detail = admin.get(f"/agents/{agent_id}").text
    for shown in (
        "Queued in its outbox</dt><dd>7",
        "Quarantined (refused)</dt><dd>2",
        "9.9.9",
        "cannot read /etc/shadow",
        "<dt>Files watched</dt><dd>42",
        "/etc, /srv/app",
        "Debian GNU/Linux",
    ):
        assert shown in detail, shown
