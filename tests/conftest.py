"""Shared fixtures: a Puffin app on SQLite (and PostgreSQL when CI provides one), and
small clients acting as users of different organisations and roles."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from puffin.app import create_app
from puffin.auth import credentials
from puffin.auth import service as auth_service
from puffin.auth.schemas import (
    ApiKeyCreate,
    OrganisationCreate,
    Principal,
    Role,
    UserCreate,
)
from puffin.core.db import transaction
from puffin.core.settings import Settings

REPO = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("PUFFIN_TEST_POSTGRES_URL")


def shared_data() -> Path:
    """Return ../shared/data (or $PUFFIN_SHARED_DATA)."""
    return Path(os.environ.get("PUFFIN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data_dir() -> Path:
    """The real third-party data, or a skip with the reason."""
    path = shared_data()
    if not path.is_dir():
        pytest.skip(f"{path} is absent; CI provides ../shared/data")
    return path


def _fresh_postgres_database() -> tuple[str, str]:
    import psycopg
    from sqlalchemy.engine import make_url

    assert POSTGRES_URL is not None
    name = f"puffin_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return str(make_url(POSTGRES_URL).set(database=name)), name


def _drop_postgres_database(name: str) -> None:
    import psycopg

    assert POSTGRES_URL is not None
    with psycopg.connect(POSTGRES_URL, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | None]:
    """A fresh database: None means the embedded SQLite default; else a new PostgreSQL DB."""
    if request.param == "sqlite":
        yield None
        return
    if not POSTGRES_URL:
        pytest.skip("PUFFIN_TEST_POSTGRES_URL is not set (CI starts a PostgreSQL)")
    url, name = _fresh_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@dataclass
class Actor:
    """A test client acting as one user in one organisation, by API key."""

    client: TestClient
    key: str
    user_id: uuid.UUID
    organisation_id: uuid.UUID
    username: str

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Send a request with this actor's key."""
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return self.client.request(method, url, headers=headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Any:
        return self.request("PATCH", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Puffin:
    """A running app with helpers to set up organisations and users through the services."""

    client: TestClient
    admin_password: str
    default_organisation_id: uuid.UUID
    announced: list[str] = field(default_factory=list)

    @property
    def state(self) -> Any:
        return self.client.app.state.puffin  # type: ignore[attr-defined]

    def organisation(self, slug: str) -> uuid.UUID:
        """Create an organisation and return its id."""
        with transaction(self.state.session_factory) as session:
            org = auth_service.create_organisation(
                session=session, org_in=OrganisationCreate(name=slug.title(), slug=slug)
            )
        return org.id

    def actor(self, organisation_id: uuid.UUID, role: Role, username: str | None = None) -> Actor:
        """Create a member with this role and an API key; return a client acting as them."""
        username = username or f"{role.value.replace('-', '')}-{uuid.uuid4().hex[:8]}"
        with transaction(self.state.session_factory) as session:
            user = auth_service.create_user(
                session=session,
                organisation_id=organisation_id,
                user_in=UserCreate(username=username, password="correct horse battery", role=role),
            )
            principal = Principal(
                user_id=user.id,
                username=username,
                is_site_admin=False,
                organisation_id=organisation_id,
                role=role,
                via="test",
            )
            key = credentials.create_api_key(
                session=session, principal=principal, key_in=ApiKeyCreate(name="tests")
            )
        return Actor(self.client, key.key, user.id, organisation_id, username)

    def site_admin(self) -> Actor:
        """Return a client acting as the generated site admin in the default organisation."""
        with transaction(self.state.session_factory) as session:
            user = credentials.verify_credentials(
                session=session,
                username="admin",
                password=self.admin_password,
                policy=credentials.ThrottlePolicy(),
            )
            principal = Principal(
                user_id=user.id,
                username="admin",
                is_site_admin=True,
                organisation_id=self.default_organisation_id,
                role=Role.ADMIN,
                via="test",
            )
            key = credentials.create_api_key(
                session=session, principal=principal, key_in=ApiKeyCreate(name="site")
            )
        return Actor(self.client, key.key, user.id, self.default_organisation_id, "admin")


def start_puffin(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Any:
    """Return (app, announced) for a test server in this data directory."""
    announced: list[str] = []
    settings = Settings(
        data_dir=data_dir, environment="test", tls=False, database_url=database_url, **overrides
    )
    return create_app(settings, announce=announced.append), announced


@pytest.fixture
def puffin(tmp_path: Path, database_url: str | None) -> Iterator[Puffin]:
    """A Puffin app on a fresh database, started, with its admin password captured."""
    app, announced = start_puffin(tmp_path, database_url)
    with TestClient(app) as client:
        password = announced[0].split("password: ")[1].strip()
        with transaction(app.state.puffin.session_factory) as session:
            default = auth_service.get_organisation_by_slug(session=session, slug="default")
        assert default is not None
        yield Puffin(client, password, default.id, announced)
