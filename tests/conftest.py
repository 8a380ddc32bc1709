"""Shared fixtures: a Puffin app on SQLite and on PostgreSQL (when one is given), and small
clients acting as users of different organisations and roles.

Every test that asks for `backend` (directly, through `database_url` or `puffin`, or through
the autouse fixture of tests/integration) runs once per database: on the embedded SQLite
default and, marked `postgres`, on a fresh PostgreSQL database copied from a migrated
template. The PostgreSQL run is skipped with its reason when PUFFIN_TEST_POSTGRES_URL is
unset. On PostgreSQL, PUFFIN_DATABASE_URL points at the test's database, so any `Settings`
the test builds (in a fixture, the CLI or a subprocess) uses it.
"""

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
BACKENDS = ("sqlite", "postgres")
NO_POSTGRES = "PUFFIN_TEST_POSTGRES_URL is not set (`make test` starts a throwaway PostgreSQL)"

# Modules under tests/ that never open Puffin's state database: a PostgreSQL run would only
# repeat them. A module may also say so itself with `PUFFIN_BACKENDS = ("sqlite",)`.
WITHOUT_STATE_DATABASE = frozenset(
    {
        "integration/test_hunt_logtest.py",  # offline hunting over files
        "integration/test_cli_rules.py",  # rule packs on disk
        "integration/misp_fixer/test_cli.py",  # the fixer against a fake MISP
        "integration/misp_fixer/test_events.py",
        "integration/misp_fixer/test_fixer.py",
        "integration/misp_fixer/test_opentip.py",
        "integration/misp_fixer/test_plan.py",
        "integration/misp_fixer/test_tokens.py",
    }
)


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


def backends_of(module: Any) -> tuple[str, ...]:
    """Return the databases a test module runs on."""
    declared: tuple[str, ...] | None = getattr(module, "PUFFIN_BACKENDS", None)
    if declared is not None:
        return declared
    relative = Path(module.__file__).resolve().relative_to(REPO / "tests").as_posix()
    return ("sqlite",) if relative in WITHOUT_STATE_DATABASE else BACKENDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each test that uses `backend` once per database its module runs on."""
    if "backend" not in metafunc.fixturenames:
        return
    names = backends_of(metafunc.module)
    if names == ("sqlite",):
        return  # one run, no id suffix: `backend` defaults to SQLite
    params = [pytest.param(n, marks=pytest.mark.postgres) if n == "postgres" else n for n in names]
    metafunc.parametrize("backend", params, indirect=True)


class PostgresDatabases:
    """Creates throwaway databases on the test server, copied from a template migrated once."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.template: str | None = None
        self.created: set[str] = set()

    def url(self, name: str) -> str:
        """Return the URL of the database with this name."""
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(statement)  # names are generated here, never taken from input

    def create(self, *, migrated: bool = True) -> str:
        """Create a database (migrated to head, or empty) and return its URL."""
        name = f"puffin_test_{uuid.uuid4().hex[:12]}"
        source = f' TEMPLATE "{self._migrated_template()}"' if migrated else ""
        self._execute(f'CREATE DATABASE "{name}"{source}')
        self.created.add(name)
        return self.url(name)

    def drop(self, url: str) -> None:
        """Drop a database made by `create`, closing what still uses it."""
        from sqlalchemy.engine import make_url

        name = make_url(url).database
        assert name in self.created
        self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.discard(name)

    def _migrated_template(self) -> str:
        if self.template is None:
            from puffin.core.db import make_engine
            from puffin.ingest.store import EventStore
            from puffin.migrations.runner import upgrade_database

            name = f"puffin_template_{uuid.uuid4().hex[:12]}"
            self._execute(f'CREATE DATABASE "{name}"')
            self.template = name
            upgrade_database(self.url(name))
            engine = make_engine(self.url(name))
            EventStore(engine).create_schema()
            engine.dispose()
        return self.template

    def close(self) -> None:
        """Drop every database still left, the template last."""
        for name in [*self.created, *([self.template] if self.template else [])]:
            self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.created.clear()


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """The test PostgreSQL server, or a skip with the reason."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    databases = PostgresDatabases(POSTGRES_URL)
    try:
        yield databases
    finally:
        databases.close()


@dataclass
class Backend:
    """The database a test runs on: `url` is None for the embedded SQLite default."""

    name: str
    url: str | None
    databases: PostgresDatabases | None = None
    extra_urls: list[str] = field(default_factory=list)

    def empty_database_url(self, directory: Path) -> str:
        """Return the URL of another, empty database, removed with the test."""
        if self.databases is None:
            return f"sqlite:///{directory / f'empty-{uuid.uuid4().hex[:8]}.db'}"
        url = self.databases.create(migrated=False)
        self.extra_urls.append(url)
        return url


@pytest.fixture
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """The test's database: SQLite in its data directory, or a fresh PostgreSQL database."""
    name = getattr(request, "param", "sqlite")
    for variable in ("PUFFIN_DATABASE_URL", "PUFFIN_EVENTS_DATABASE_URL"):
        monkeypatch.delenv(variable, raising=False)
    if name == "sqlite":
        yield Backend("sqlite", None)
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    chosen = Backend("postgres", databases.create(), databases)
    assert chosen.url is not None
    monkeypatch.setenv("PUFFIN_DATABASE_URL", chosen.url)
    try:
        yield chosen
    finally:
        for url in [chosen.url, *chosen.extra_urls]:
            databases.drop(url)


@pytest.fixture
def database_url(backend: Backend) -> str | None:
    """The test's database URL: None means the embedded SQLite default."""
    return backend.url


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
    if database_url is not None:
        overrides["database_url"] = database_url  # else PUFFIN_DATABASE_URL or SQLite
    settings = Settings(data_dir=data_dir, environment="test", tls=False, **overrides)
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
