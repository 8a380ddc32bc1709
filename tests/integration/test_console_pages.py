"""Console pages through the app without a browser: sign-in, CSRF, roles and tenant isolation."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from puffin.app import create_app
from puffin.auth import credentials
from puffin.auth import service as auth_service
from puffin.auth.credentials import ThrottlePolicy
from puffin.auth.schemas import ApiKeyCreate, OrganisationCreate, Role, UserCreate
from puffin.core.db import transaction
from puffin.core.settings import Settings

PASSWORD = "correct-horse-battery"
MAX_FAILURES = 3


@dataclass
class Server:
    """The app under test, its first admin's password and a way to make clients."""

    app: object
    admin_password: str

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="https://testserver", follow_redirects=False)

    @property
    def factory(self):  # type: ignore[no-untyped-def]
        return self.app.state.puffin.session_factory  # type: ignore[attr-defined]


@pytest.fixture
def server(tmp_path):
    announced: list[str] = []
    settings = Settings(
        data_dir=tmp_path, environment="test", tls=True, login_max_failures=MAX_FAILURES
    )
    app = create_app(settings, announce=announced.append)
    with TestClient(app):  # runs the lifespan: migrations and the first admin
        password = announced[0].split("password: ")[1].strip()
        yield Server(app=app, admin_password=password)


def _login_token(client: TestClient) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def login(client: TestClient, username: str, password: str, next_path: str = "/"):
    token = _login_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_path},
    )


def csrf_of(client: TestClient) -> str:
    page = client.get("/")
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text).group(1)


def signed_in(server: Server, username: str = "admin", password: str | None = None) -> TestClient:
    client = server.client()
    response = login(client, username, password or server.admin_password)
    assert response.status_code == 303, response.text
    return client


def default_organisation(server: Server) -> uuid.UUID:
    with transaction(server.factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
        assert org is not None
        return org.id


def make_member(server: Server, organisation_id: uuid.UUID, username: str, role: Role) -> uuid.UUID:
    with transaction(server.factory) as session:
        user = auth_service.create_user(
            session=session,
            organisation_id=organisation_id,
            user_in=UserCreate(username=username, password=PASSWORD, role=role),
        )
    return user.id


# --- signing in ----------------------------------------------------------------------


def test_login_sets_httponly_samesite_secure_cookie_and_follows_next(server):
    client = server.client()
    response = login(client, "admin", server.admin_password, next_path="/admin/users")
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users"
    cookie = next(
        v for k, v in response.headers.multi_items() if k == "set-cookie" and "puffin_session=" in v
    )
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags
    assert "secure" in flags
    assert "samesite=lax" in flags
    assert client.get("/admin/users").status_code == 200


def test_pages_redirect_to_login_with_the_page_as_next(server):
    response = server.client().get("/admin/audit?action=create")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/admin/audit%3Faction%3Dcreate"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example", "/\\evil.example"])
def test_login_never_redirects_off_site(server, target):
    response = login(server.client(), "admin", server.admin_password, next_path=target)
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_login_form_without_its_csrf_token_is_refused(server):
    client = server.client()
    _login_token(client)
    response = client.post(
        "/login",
        data={"username": "admin", "password": server.admin_password, "csrf_token": "forged"},
    )
    assert response.status_code == 403
    assert "puffin_session" not in response.cookies


def test_wrong_password_shows_an_error_and_repeated_failures_lock_the_account(server):
    client = server.client()
    for _ in range(MAX_FAILURES):
        failed = login(client, "admin", "not-the-password")
        assert failed.status_code == 401
        assert "Wrong username or password." in failed.text
    locked = login(client, "admin", server.admin_password)
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert re.search(r"try again in \d+ s", locked.text)
    assert int(locked.headers["retry-after"]) > 0
    assert "puffin_session" not in locked.cookies


def test_logout_ends_the_session(server):
    client = signed_in(server)
    response = client.post("/logout", data={"csrf_token": csrf_of(client)})
    assert response.status_code == 303
    assert client.get("/").status_code == 303


# --- CSRF on console forms -------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_console_forms_without_the_csrf_token_are_refused(server, token):
    client = signed_in(server)
    data = {"name": "Sneaky", "slug": "sneaky"}
    if token:
        data["csrf_token"] = token
    response = client.post("/admin/organisations", data=data, headers={"accept": "text/html"})
    assert response.status_code == 403
    assert "security token" in response.text
    listing = client.get("/admin/organisations").text
    assert "Sneaky" not in listing
    assert client.post("/logout").status_code == 403


def test_csrf_header_is_accepted_for_script_calls(server):
    client = signed_in(server)
    response = client.post(
        "/admin/organisations",
        data={"name": "Scripted", "slug": "scripted"},
        headers={"X-CSRF-Token": csrf_of(client)},
    )
    assert response.status_code == 303


# --- roles -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/admin/users", "/admin/organisations", "/admin/audit"])
def test_read_only_user_cannot_reach_admin_pages(server, path):
    make_member(server, default_organisation(server), "reader", Role.READ_ONLY)
    client = signed_in(server, "reader", PASSWORD)
    response = client.get(path)
    assert response.status_code == 403
    assert "admin role" in response.text


def test_read_only_user_cannot_change_anything(server):
    organisation_id = default_organisation(server)
    make_member(server, organisation_id, "reader", Role.READ_ONLY)
    client = signed_in(server, "reader", PASSWORD)
    csrf = csrf_of(client)
    created = client.post(
        "/admin/users", data={"username": "mallory", "password": PASSWORD, "csrf_token": csrf}
    )
    assert created.status_code == 403
    key = client.post("/admin/api-keys", data={"name": "mine", "csrf_token": csrf})
    assert key.status_code == 403
    keys_page = client.get("/admin/api-keys")
    assert keys_page.status_code == 200
    assert "Create API key" not in keys_page.text
    nav = client.get("/admin").text
    assert 'href="/admin/users"' not in nav


def test_analyst_sees_only_own_api_keys_and_no_admin_tabs(server):
    organisation_id = default_organisation(server)
    make_member(server, organisation_id, "ana", Role.ANALYST)
    admin = signed_in(server)
    admin.post("/admin/api-keys", data={"name": "admin-key", "csrf_token": csrf_of(admin)})
    client = signed_in(server, "ana", PASSWORD)
    created = client.post(
        "/admin/api-keys", data={"name": "ana-key", "csrf_token": csrf_of(client)}
    )
    assert created.status_code == 201
    everyone = client.get("/admin/api-keys?scope=all").text
    assert "ana-key" in everyone
    assert "admin-key" not in everyone


# --- tenant isolation -------------------------------------------------------------------


@pytest.fixture
def other_tenant(server):
    """Organisation B with a member and an API key, and an admin of organisation A only."""
    with transaction(server.factory) as session:
        org_b = auth_service.create_organisation(
            session=session, org_in=OrganisationCreate(name="Beta", slug="beta")
        )
        org_a = auth_service.create_organisation(
            session=session, org_in=OrganisationCreate(name="Alpha", slug="alpha")
        )
    user_b = make_member(server, org_b.id, "bob-b", Role.ADMIN)
    make_member(server, org_a.id, "alice-a", Role.ADMIN)
    with transaction(server.factory) as session:
        user = credentials.verify_credentials(
            session=session, username="bob-b", password=PASSWORD, policy=ThrottlePolicy()
        )
        info = credentials.open_session(session=session, user=user, ip=None, max_age_seconds=60)
        key_b = credentials.create_api_key(
            session=session, principal=info.principal, key_in=ApiKeyCreate(name="beta-key")
        )
    return {"org": org_b.id, "user": user_b, "key": key_b.id}


def test_objects_of_another_organisation_are_not_reachable(server, other_tenant):
    client = signed_in(server, "alice-a", PASSWORD)
    csrf = csrf_of(client)
    user_b, key_b, org_b = other_tenant["user"], other_tenant["key"], other_tenant["org"]
    assert client.get(f"/admin/users/{user_b}").status_code == 404
    assert client.get(f"/admin/organisations/{org_b}").status_code == 404
    for path, data in [
        (f"/admin/users/{user_b}/role", {"role": "read-only"}),
        (f"/admin/users/{user_b}/password", {"password": "another-long-password"}),
        (f"/admin/users/{user_b}/active", {"active": "false"}),
        (f"/admin/users/{user_b}/remove", {}),
        (f"/admin/api-keys/{key_b}/revoke", {}),
        (f"/admin/organisations/{org_b}", {"name": "Pwned"}),
        ("/switch-organisation", {"organisation_id": str(org_b)}),
    ]:
        response = client.post(path, data={**data, "csrf_token": csrf})
        assert response.status_code == 404, path
    switcher = client.get("/").text
    assert "Beta" not in switcher
    assert "beta-key" not in client.get("/admin/api-keys?scope=all").text
    with transaction(server.factory) as session:
        assert (
            auth_service.role_in(session=session, user_id=user_b, organisation_id=org_b)
            == Role.ADMIN
        )


# --- admin work and the audit trail -------------------------------------------------------


def test_user_administration_through_the_console_is_audited(server):
    client = signed_in(server)
    csrf = csrf_of(client)
    invalid = client.post(
        "/admin/users", data={"username": "x", "password": "short", "csrf_token": csrf}
    )
    assert invalid.status_code == 422
    assert "at least 12 characters" in invalid.text
    created = client.post(
        "/admin/users",
        data={"username": "carol", "password": PASSWORD, "role": "analyst", "csrf_token": csrf},
    )
    assert created.status_code == 303
    user_page = created.headers["location"]
    duplicate = client.post(
        "/admin/users", data={"username": "carol", "password": PASSWORD, "csrf_token": csrf}
    )
    assert duplicate.status_code == 409
    assert "is taken" in duplicate.text
    assert (
        client.post(f"{user_page}/role", data={"role": "read-only", "csrf_token": csrf}).status_code
        == 303
    )
    reset = client.post(f"{user_page}/password", data={"password": "", "csrf_token": csrf})
    assert reset.status_code == 200
    generated = re.search(r'id="new-password">([^<]+)<', reset.text).group(1)
    assert login(server.client(), "carol", generated).status_code == 303
    assert (
        client.post(f"{user_page}/active", data={"active": "false", "csrf_token": csrf}).status_code
        == 303
    )
    assert "deactivated" in client.get(user_page).text
    assert login(server.client(), "carol", generated).status_code == 401
    assert client.post(f"{user_page}/remove", data={"csrf_token": csrf}).status_code == 303
    assert client.get(user_page).status_code == 404
    trail = client.get("/admin/audit?actor=admin").text
    for summary in [
        "created user carol as analyst",
        "changed the role of carol to read-only",
        "set the password of carol",
        "updated user carol",
        "removed carol from the organisation",
    ]:
        assert summary in trail
    filtered = client.get("/admin/audit?action=set-role").text
    assert "changed the role of carol" in filtered
    assert "created user carol" not in filtered


def test_last_admin_cannot_be_demoted_and_the_page_says_why(server):
    client = signed_in(server)
    csrf = csrf_of(client)
    admin_id = re.search(
        r'href="/admin/users/([0-9a-f-]{36})"', client.get("/admin/users").text
    ).group(1)
    response = client.post(
        f"/admin/users/{admin_id}/role", data={"role": "analyst", "csrf_token": csrf}
    )
    assert response.status_code == 422
    assert "at least one admin" in response.text
    assert "selected>admin" in client.get(f"/admin/users/{admin_id}").text


def test_api_key_is_shown_once_and_works_against_the_api(server):
    client = signed_in(server)
    created = client.post("/admin/api-keys", data={"name": "siem", "csrf_token": csrf_of(client)})
    assert created.status_code == 201
    key = re.search(r'id="api-key-value">([^<]+)<', created.text).group(1)
    me = server.client().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert me.status_code == 200
    assert me.json()["user"]["username"] == "admin"
    listing = client.get("/admin/api-keys").text
    assert "siem" in listing
    assert key not in listing
    key_id = re.search(r'action="/admin/api-keys/([0-9a-f-]{36})/revoke"', listing).group(1)
    revoked = client.post(f"/admin/api-keys/{key_id}/revoke", data={"csrf_token": csrf_of(client)})
    assert revoked.status_code == 303
    refused = server.client().get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401


def test_site_admin_creates_and_switches_organisation(server):
    client = signed_in(server)
    csrf = csrf_of(client)
    created = client.post(
        "/admin/organisations", data={"name": "Gamma Corp", "slug": "gamma", "csrf_token": csrf}
    )
    assert created.status_code == 303
    page = client.get("/admin/organisations").text
    gamma = re.search(r'<option value="([0-9a-f-]{36})">Gamma Corp', page).group(1)
    switched = client.post(
        "/switch-organisation",
        data={"organisation_id": gamma, "next": "/admin/users/123", "csrf_token": csrf},
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/admin/users"
    after = client.get("/admin/users").text
    assert "Members of Gamma Corp" in after
    assert "Now working in Gamma Corp" in after
    bad_slug = client.post(
        "/admin/organisations", data={"name": "Delta", "slug": "Not A Slug", "csrf_token": csrf}
    )
    assert bad_slug.status_code == 422
    assert "Use only the allowed characters." in bad_slug.text


def test_audit_filters_reject_bad_dates_with_a_message(server):
    client = signed_in(server)
    response = client.get("/admin/audit?since=yesterday")
    assert response.status_code == 422
    assert "Enter a date and time." in response.text
    ranged = client.get("/admin/audit?since=2000-01-01T00:00:00&until=2000-01-02T00:00:00")
    assert ranged.status_code == 200
    assert "No entries match these filters." in ranged.text


def test_sections_to_come_render_an_empty_state(server):
    client = signed_in(server)
    for path in ["/cases", "/analyzers"]:
        response = client.get(path)
        assert response.status_code == 200
        assert "coming in a later release" in response.text


def test_missing_object_gives_an_html_error_page_in_the_layout(server):
    client = signed_in(server)
    response = client.get(f"/admin/users/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert 'aria-label="Sections"' in response.text


def test_malformed_addresses_give_html_errors_not_json(server):
    client = signed_in(server)
    not_an_id = client.get("/admin/users/not-an-id")
    assert not_an_id.status_code == 404
    assert not_an_id.headers["content-type"].startswith("text/html")
    bad_offset = client.get("/admin/audit?offset=many")
    assert bad_offset.status_code == 400
    assert "offset" in bad_offset.text
