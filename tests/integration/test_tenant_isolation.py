"""Every API route refuses another organisation's objects, and read-only users change nothing.

The walker reads the routes from the OpenAPI description, so a new route fails this test
until it is added to ROUTES with a request that would succeed on the caller's own data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from puffin.alert import service as alert_service
from puffin.alert.schemas import Detection, Level
from puffin.auth.schemas import Role
from puffin.core.db import transaction
from puffin.detection.registry import rule_registry
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.schemas import EnrollmentRequest
from puffin.ingest.store import NewEvent
from puffin.intel import service as intel_service
from puffin.intel.schemas import RunCreate, RunStatus, RunTrigger

# (method, path) -> JSON body (or None). Path parameters are filled from the target
# organisation's objects. Routes for agents (not users) are listed with AGENT.
AGENT = "agent-authenticated"
ROUTES: dict[tuple[str, str], Any] = {
    ("GET", "/api/v1/me"): None,
    ("GET", "/api/v1/organisations"): None,
    ("POST", "/api/v1/organisations"): {"name": "Intruder", "slug": "intruder"},
    ("GET", "/api/v1/organisations/{organisation_id}"): None,
    ("PATCH", "/api/v1/organisations/{organisation_id}"): {"name": "Owned"},
    ("POST", "/api/v1/organisations/{organisation_id}/members"): {"username": "{username}"},
    ("GET", "/api/v1/users"): None,
    ("POST", "/api/v1/users"): {"username": "newcomer", "password": "correct horse battery"},
    ("GET", "/api/v1/users/{user_id}"): None,
    ("PATCH", "/api/v1/users/{user_id}"): {"display_name": "Owned"},
    ("DELETE", "/api/v1/users/{user_id}"): None,
    ("PUT", "/api/v1/users/{user_id}/role"): {"role": "read-only"},
    ("PUT", "/api/v1/users/{user_id}/password"): {"password": "owned owned owned"},
    ("GET", "/api/v1/api-keys"): None,
    ("POST", "/api/v1/api-keys"): {"name": "mine"},
    ("DELETE", "/api/v1/api-keys/{key_id}"): None,
    ("GET", "/api/v1/audit"): None,
    ("GET", "/api/v1/agents"): None,
    ("GET", "/api/v1/agents/{agent_id}"): None,
    ("PATCH", "/api/v1/agents/{agent_id}"): {"groups": ["owned"]},
    ("DELETE", "/api/v1/agents/{agent_id}"): None,
    ("POST", "/api/v1/agents/{agent_id}/revoke"): None,
    ("POST", "/api/v1/agents/{agent_id}/reenroll"): None,
    ("GET", "/api/v1/agents/{agent_id}/tasks"): None,
    ("POST", "/api/v1/agents/{agent_id}/tasks"): {
        "action": "block_ip",
        "parameters": {"ip": "192.0.2.1"},
    },
    ("GET", "/api/v1/agent-groups"): None,
    ("PUT", "/api/v1/agent-groups"): {"name": "default", "config": {"owned": True}},
    ("GET", "/api/v1/enrollment-tokens"): None,
    ("POST", "/api/v1/enrollment-tokens"): {},
    ("DELETE", "/api/v1/enrollment-tokens/{token_id}"): None,
    ("GET", "/api/v1/alerts"): None,
    ("GET", "/api/v1/alerts/stats"): None,
    ("GET", "/api/v1/alerts/stream"): None,
    ("GET", "/api/v1/alerts/{alert_id}"): None,
    ("PATCH", "/api/v1/alerts/{alert_id}"): {"status": "closed-false-positive"},
    ("POST", "/api/v1/alerts/{alert_id}/comments"): {"text": "owned"},
    ("GET", "/api/v1/events"): None,
    ("GET", "/api/v1/events/histogram"): None,
    ("GET", "/api/v1/events/{event_id}"): None,
    ("GET", "/api/v1/rules"): None,
    ("GET", "/api/v1/rules/problems"): None,
    ("POST", "/api/v1/rules/reload"): None,
    ("GET", "/api/v1/rules/{rule_id}"): None,
    ("PUT", "/api/v1/rules/{rule_id}/settings"): {"enabled": True, "staged": False},
    ("GET", "/api/v1/misp-fixer/runs"): None,
    ("GET", "/api/v1/misp-fixer/runs/{run_id}"): None,
    ("POST", "/webhook/misp_event_fixer/"): AGENT,
    ("POST", "/api/agent/v1/enroll"): AGENT,
    ("POST", "/api/agent/v1/events"): AGENT,
    ("POST", "/api/agent/v1/keepalive"): AGENT,
    ("POST", "/api/agent/v1/inventory"): AGENT,
    ("GET", "/healthz"): AGENT,
    ("GET", "/readyz"): AGENT,
    ("GET", "/metrics"): AGENT,
}

QUERY = {("GET", "/api/v1/alerts/stream"): {"max_seconds": 0.6}}

# Rules are shared by the whole server; only their switches belong to an organisation. A
# caller reaches the shared rule (and its own switches), never the other organisation's.
SHARED = {"/api/v1/rules/{rule_id}", "/api/v1/rules/{rule_id}/settings"}
RULE_ID = "0d6c3f9e-5a7b-4e2f-9c1d-8b4a2e6f7a10"
RULE = f"""\
title: Shared test rule
id: {RULE_ID}
level: high
logsource: {{product: linux, service: sshd}}
detection:
  selection: {{program: sshd}}
  condition: selection
"""


@dataclass
class Tenant:
    """An organisation with one object of every kind, and its admin."""

    ids: dict[str, str]
    admin: Any


def _populate(puffin: Any, slug: str) -> Tenant:
    organisation_id = puffin.organisation(slug)
    admin = puffin.actor(organisation_id, Role.ADMIN, username=f"{slug}-admin")
    member = puffin.actor(organisation_id, Role.ANALYST, username=f"{slug}-analyst")
    token = admin.post("/api/v1/enrollment-tokens", json={"max_uses": 5}).json()
    state = puffin.state
    with transaction(state.session_factory) as session:
        agent = endpoint_service.enroll(
            session=session,
            request=EnrollmentRequest(token=token["token"], name=f"{slug}-host"),
            ip=None,
        )
        alert, _ = alert_service.raise_alert(
            session=session,
            organisation_id=organisation_id,
            detection=Detection(rule_id="r1", rule_title=f"{slug} alert", level=Level.HIGH),
        )
        run = intel_service.record_run(
            session=session,
            organisation_id=organisation_id,
            run_in=RunCreate(
                trigger=RunTrigger.WEBHOOK,
                event_id="42",
                event_info=f"{slug} misp event",
                status=RunStatus.DONE,
                started_at=alert.first_seen,
                finished_at=alert.first_seen,
            ),
        )
    task = admin.post(
        f"/api/v1/agents/{agent.agent_id}/tasks",
        json={"action": "kill_process", "parameters": {"pid": 999}},
    ).json()
    state.extras["event_store"].append(
        organisation_id=organisation_id,
        source_id=agent.agent_id,
        events=[NewEvent(data={"secret": slug}, full_log=f"{slug} event")],
    )
    event_id = state.extras["event_store"].last_id()
    rules = state.settings.data_dir / "rules" / "shared"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "shared.yml").write_text(RULE)
    rule_registry(state).reload()
    switched = admin.put(
        f"/api/v1/rules/{RULE_ID}/settings", json={"enabled": False, "staged": True}
    )
    assert switched.status_code == 200
    ids = {
        "organisation_id": str(organisation_id),
        "user_id": str(member.user_id),
        "username": member.username,
        "key_id": admin.get("/api/v1/api-keys").json()["items"][0]["id"],
        "agent_id": str(agent.agent_id),
        "token_id": token["id"],
        "alert_id": str(alert.id),
        "task_id": task["id"],
        "event_id": str(event_id),
        "rule_id": RULE_ID,
        "run_id": str(run.id),
    }
    return Tenant(ids=ids, admin=admin)


def _snapshot(tenant: Tenant) -> dict[str, Any]:
    admin = tenant.admin
    return {
        "org": admin.get(f"/api/v1/organisations/{tenant.ids['organisation_id']}").json(),
        "users": admin.get("/api/v1/users").json(),
        "keys": admin.get("/api/v1/api-keys", params={"all_users": True}).json(),
        "agents": admin.get("/api/v1/agents").json(),
        "groups": admin.get("/api/v1/agent-groups").json(),
        "tokens": admin.get("/api/v1/enrollment-tokens").json(),
        "tasks": admin.get(f"/api/v1/agents/{tenant.ids['agent_id']}/tasks").json(),
        "alert": admin.get(f"/api/v1/alerts/{tenant.ids['alert_id']}").json(),
        "events": admin.get("/api/v1/events").json(),
        "rule": admin.get(f"/api/v1/rules/{tenant.ids['rule_id']}").json(),
        "runs": admin.get("/api/v1/misp-fixer/runs").json(),
    }


def _fill(template: str, ids: dict[str, str]) -> str:
    for name, value in ids.items():
        template = template.replace("{" + name + "}", value)
    return template


def _body(body: Any, ids: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {k: _body(v, ids) for k, v in body.items()}
    if isinstance(body, str):
        return _fill(body, ids)
    return body


def _routes(puffin: Any) -> list[tuple[str, str]]:
    spec = puffin.client.app.openapi()
    return [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "patch", "delete"}
    ]


@pytest.fixture
def tenants(puffin):
    return _populate(puffin, "alpha"), _populate(puffin, "bravo")


def test_every_route_is_in_the_walkers_table(puffin):
    missing = [route for route in _routes(puffin) if route not in ROUTES]
    assert missing == [], f"add these routes to ROUTES in {__file__}: {missing}"


def test_an_admin_of_one_organisation_cannot_reach_another_organisations_objects(puffin, tenants):
    alpha, bravo = tenants
    before = _snapshot(bravo)
    secrets = {v for k, v in bravo.ids.items() if k not in {"username", "event_id", "rule_id"}}
    secrets |= {"bravo event", "bravo alert", "bravo-host", "bravo misp event"}
    for method, path in _routes(puffin):
        body = ROUTES[(method, path)]
        if body == AGENT:
            continue
        url = _fill(path, bravo.ids)
        response = alpha.admin.request(
            method, url, json=_body(body, bravo.ids), params=QUERY.get((method, path))
        )
        if "{" in path and path not in SHARED:
            assert response.status_code in (403, 404), (method, path, response.status_code)
        else:
            assert response.status_code < 500, (method, path, response.text)
            leaked = [s for s in secrets if s in response.text]
            assert leaked == [], (method, path, leaked)
    assert _snapshot(bravo) == before


def test_a_read_only_user_cannot_change_anything(puffin, tenants):
    alpha, _ = tenants
    reader = puffin.actor(uuid.UUID(alpha.ids["organisation_id"]), Role.READ_ONLY)
    before = _snapshot(alpha)
    trail_before = alpha.admin.get("/api/v1/audit").json()["total"]
    for method, path in _routes(puffin):
        body = ROUTES[(method, path)]
        if body == AGENT or method == "GET":
            continue
        response = reader.request(method, _fill(path, alpha.ids), json=_body(body, alpha.ids))
        assert response.status_code in (403, 404), (method, path, response.status_code)
    assert _snapshot(alpha) == before
    assert alpha.admin.get("/api/v1/audit").json()["total"] == trail_before


def test_an_agent_cannot_report_on_another_organisations_task(puffin, tenants):
    alpha, bravo = tenants
    token = alpha.admin.post("/api/v1/enrollment-tokens", json={}).json()["token"]
    enrolled = puffin.client.post(
        "/api/agent/v1/enroll", json={"token": token, "name": "alpha-second"}
    ).json()
    headers = {
        "X-Puffin-Agent": enrolled["agent_id"],
        "Authorization": f"Bearer {enrolled['credential']}",
    }
    response = puffin.client.post(
        "/api/agent/v1/keepalive",
        json={"task_results": [{"task_id": bravo.ids["task_id"], "ok": True}]},
        headers=headers,
    )
    assert response.status_code == 404
    tasks = bravo.admin.get(f"/api/v1/agents/{bravo.ids['agent_id']}/tasks").json()
    assert tasks[0]["status"] == "pending"
