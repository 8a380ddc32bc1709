"""Organisations, users, roles, API keys and the audit trail through the API, on every
database the suite is given (SQLite always, PostgreSQL in CI)."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text

from puffin.auth import credentials
from puffin.auth.models import ApiKey, Organisation
from puffin.auth.schemas import Role
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.errors import TooManyRequests, Unauthenticated


def test_create_organisation_should_return_201_for_a_site_admin(puffin):
    admin = puffin.site_admin()
    response = admin.post("/api/v1/organisations", json={"name": "Acme", "slug": "acme"})
    assert response.status_code == 201
    assert response.json()["slug"] == "acme"
    duplicate = admin.post("/api/v1/organisations", json={"name": "ACME", "slug": "acme-2"})
    assert duplicate.status_code == 409
    assert duplicate.headers["content-type"] == "application/problem+json"


def test_a_write_is_committed_before_its_response_is_sent(puffin):
    """A client that acts on a 201 (or follows a redirect) at once must find its change.

    The request goes straight to the ASGI app; when the first byte of the response is
    handed to the server, a separate database session looks for the new organisation.
    """
    admin = puffin.site_admin()
    body = json.dumps({"name": "Initech", "slug": "initech"}).encode()
    found_when_sent: list[bool] = []
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            with transaction(puffin.state.session_factory) as session:
                row = session.scalar(select(Organisation).where(Organisation.slug == "initech"))
            found_when_sent.append(row is not None)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/organisations",
        "raw_path": b"/api/v1/organisations",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {admin.key}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(puffin.client.app(scope, receive, send))
    assert status == [201]
    assert found_when_sent == [True]


def test_a_non_ascii_organisation_name_taken_twice_is_409_not_500(puffin):
    admin = puffin.site_admin()
    first = admin.post("/api/v1/organisations", json={"name": "Ðunið", "slug": "dunid"})
    assert first.status_code == 201
    again = admin.post("/api/v1/organisations", json={"name": "Ðunið", "slug": "dunid-2"})
    assert again.status_code == 409, again.text
    other = admin.post("/api/v1/organisations", json={"name": "Other", "slug": "other"}).json()
    renamed = admin.patch(f"/api/v1/organisations/{other['id']}", json={"name": "Ðunið"})
    assert renamed.status_code == 409, renamed.text


def test_a_nul_character_is_stored_or_refused_with_422_never_500(puffin, backend):
    admin = puffin.actor(puffin.organisation("acme"), Role.ADMIN)
    created = admin.post("/api/v1/api-keys", json={"name": "a\u0000b"})
    searched = admin.get("/api/v1/events", params={"module": "\x00"})
    grouped = admin.put("/api/v1/agent-groups", json={"name": "g", "config": {"\u0000": 1}})
    for response in (created, searched, grouped):
        if backend.name == "postgres":  # PostgreSQL text cannot hold U+0000
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert "NUL" in response.json()["detail"]
        else:
            assert response.status_code < 300, response.text


def test_create_organisation_should_return_403_for_an_organisation_admin(puffin):
    org = puffin.organisation("acme")
    admin = puffin.actor(org, Role.ADMIN)
    response = admin.post("/api/v1/organisations", json={"name": "Other", "slug": "other"})
    assert response.status_code == 403


def test_create_user_should_return_201_and_hide_the_password(puffin):
    admin = puffin.actor(puffin.organisation("acme"), Role.ADMIN)
    response = admin.post(
        "/api/v1/users",
        json={"username": "carol", "password": "correct horse battery", "role": "read-only"},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["role"] == "read-only"
    assert "password" not in response.text
    assert "argon2" not in response.text


def test_weak_password_and_bad_username_should_return_422_with_the_field(puffin):
    admin = puffin.actor(puffin.organisation("acme"), Role.ADMIN)
    short = admin.post("/api/v1/users", json={"username": "dave", "password": "short"})
    assert short.status_code == 422
    assert short.json()["errors"][0]["location"] == "body.password"
    spaces = admin.post(
        "/api/v1/users", json={"username": "d a v e", "password": "correct horse battery"}
    )
    assert spaces.status_code == 422


def test_role_changes_keep_one_admin(puffin):
    org = puffin.organisation("acme")
    admin = puffin.actor(org, Role.ADMIN)
    demoted = admin.put(f"/api/v1/users/{admin.user_id}/role", json={"role": "analyst"})
    assert demoted.status_code == 422
    assert "at least one admin" in demoted.json()["detail"]


def test_api_key_is_shown_once_and_stored_only_as_a_hash(puffin):
    analyst = puffin.actor(puffin.organisation("acme"), Role.ANALYST)
    created = analyst.post("/api/v1/api-keys", json={"name": "script", "expires_in_days": 1})
    assert created.status_code == 201
    key = created.json()["key"]
    listed = analyst.get("/api/v1/api-keys").json()
    assert all("key" not in item for item in listed["items"])
    with puffin.state.engine.connect() as connection:
        dump = " ".join(str(row) for row in connection.execute(text("SELECT * FROM api_key")))
    assert key not in dump
    with transaction(puffin.state.session_factory) as session:
        hashes = session.scalars(select(ApiKey.key_hash)).all()
    assert all(len(h) == 64 for h in hashes)
    me = puffin.client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.json()["user"]["username"] == analyst.username


def test_revoked_and_expired_keys_are_refused(puffin):
    analyst = puffin.actor(puffin.organisation("acme"), Role.ANALYST)
    created = analyst.post("/api/v1/api-keys", json={"name": "short-lived"}).json()
    headers = {"Authorization": f"Bearer {created['key']}"}
    assert puffin.client.get("/api/v1/me", headers=headers).status_code == 200
    assert analyst.delete(f"/api/v1/api-keys/{created['id']}").status_code == 200
    refused = puffin.client.get("/api/v1/me", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    second = analyst.post("/api/v1/api-keys", json={"name": "expiring"}).json()
    with transaction(puffin.state.session_factory) as session:
        row = session.get(ApiKey, __import__("uuid").UUID(second["id"]))
        row.expires_at = utcnow() - timedelta(seconds=1)
    expired = puffin.client.get("/api/v1/me", headers={"Authorization": f"Bearer {second['key']}"})
    assert expired.status_code == 401
    garbage = puffin.client.get("/api/v1/me", headers={"Authorization": "Bearer pfn_nope"})
    assert garbage.status_code == 401


def test_read_only_members_cannot_create_keys_but_admins_can_for_them(puffin):
    org = puffin.organisation("acme")
    admin = puffin.actor(org, Role.ADMIN)
    reader = puffin.actor(org, Role.READ_ONLY)
    assert reader.post("/api/v1/api-keys", json={"name": "x"}).status_code == 403
    for_reader = admin.post(
        "/api/v1/api-keys", json={"name": "dash", "user_id": str(reader.user_id)}
    )
    assert for_reader.status_code == 201
    key = for_reader.json()["key"]
    me = puffin.client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
    assert me["role"] == "read-only"


def test_sign_in_is_throttled_after_repeated_failures(puffin):
    policy = credentials.ThrottlePolicy(max_failures=3, lockout_seconds=60)
    for _ in range(3):
        with transaction(puffin.state.session_factory) as session, suppress(Unauthenticated):
            credentials.verify_credentials(
                session=session, username="admin", password="wrong", policy=policy
            )
    with transaction(puffin.state.session_factory) as session:
        try:
            credentials.verify_credentials(
                session=session, username="admin", password=puffin.admin_password, policy=policy
            )
            locked = False
        except TooManyRequests as error:
            locked = error.retry_after > 0
    assert locked


def test_every_change_is_in_the_audit_trail_with_who_and_what(puffin):
    org = puffin.organisation("acme")
    admin = puffin.actor(org, Role.ADMIN)
    user = admin.post(
        "/api/v1/users", json={"username": "erin", "password": "correct horse battery"}
    ).json()
    admin.put(f"/api/v1/users/{user['id']}/role", json={"role": "read-only"})
    admin.patch(f"/api/v1/users/{user['id']}", json={"display_name": "Erin"})
    trail = admin.get("/api/v1/audit", params={"object_id": user["id"]}).json()
    assert [e["action"] for e in trail["items"]] == ["update", "set-role", "create"]
    newest = trail["items"][0]
    assert newest["actor_name"] == admin.username
    assert newest["organisation_id"] == str(org)
    assert newest["changes"] == {"display_name": ["", "Erin"]}
    by_text = admin.get("/api/v1/audit", params={"text": "role of erin"}).json()
    assert by_text["total"] == 1
    assert admin.get("/api/v1/audit", params={"since": "not a date"}).status_code == 422


def test_health_readiness_metrics_and_docs(puffin):
    client = puffin.client
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}
    assert "puffin_http_requests_total" in client.get("/metrics").text
    assert client.get("/docs").status_code == 200
    assert client.get("/redoc").status_code == 200
    assert "/api/v1/users" in client.get("/openapi.json").json()["paths"]
    missing = client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong_method = client.delete("/api/v1/me")
    assert wrong_method.status_code == 405
