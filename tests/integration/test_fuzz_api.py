"""Property-based fuzzing of every operation in the OpenAPI description, on each database.

Schemathesis generates valid and invalid requests for each operation from the app's own
OpenAPI document. Each case is sent twice: as the site admin and as the admin of
organisation A, while organisation B holds one object of every kind. Whatever the input:

- the server never answers 5xx;
- every error (4xx) is an `application/problem+json` document with a title, a detail and
  the response's status;
- nothing organisation A's admin receives names organisation B or its objects, and every
  `organisation_id` in its successful answers is organisation A's.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from tests.conftest import PostgresDatabases, Puffin, start_puffin
from tests.integration.test_tenant_isolation import _populate

from puffin.auth import service as auth_service
from puffin.auth.schemas import Role
from puffin.core.db import transaction

# The fuzz target is built once per module and database (below), not per test.
PUFFIN_BACKENDS = ("sqlite",)
SKIPPED = {"GET /api/v1/alerts/stream"}  # an endless stream; covered by its own test
EXAMPLES = 15
PROBLEM_JSON = "application/problem+json"
# Served as text by design: Prometheus' exposition format.
NOT_JSON = {"GET /metrics"}


class Target:
    """The app under fuzzing, its OpenAPI schema, two callers and organisation B's traces."""

    def __init__(self, schema: Any, site_admin: str, member: str, org_a: str, secrets: set[str]):
        self.schema = schema
        self.site_admin = site_admin
        self.member = member
        self.org_a = org_a
        self.secrets = secrets


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzz_target(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Target]:
    databases: PostgresDatabases | None = None
    url = None
    if request.param == "postgres":
        databases = request.getfixturevalue("postgres_databases")
        url = databases.create()
    app, announced = start_puffin(tmp_path_factory.mktemp("fuzz"), url)
    try:
        with TestClient(app) as client:
            password = announced[0].split("password: ")[1].strip()
            with transaction(app.state.puffin.session_factory) as session:
                default = auth_service.get_organisation_by_slug(session=session, slug="default")
            assert default is not None
            puffin = Puffin(client, password, default.id)
            other = _populate(puffin, "zulu-fuzz-victim")
            org_a = puffin.organisation("fuzz-home")
            member = puffin.actor(org_a, Role.ADMIN, username="fuzz-home-admin")
            shared = {"rule_id", "event_id"}  # rules are server-wide; event ids are counters
            secrets = {v for k, v in other.ids.items() if k not in shared} | {"zulu-fuzz-victim"}
            schema = schemathesis.openapi.from_asgi("/openapi.json", app)
            yield Target(schema, puffin.site_admin().key, member.key, str(org_a), secrets)
    finally:
        if databases is not None and url is not None:
            databases.drop(url)


def _labels() -> list[str]:
    from puffin.app import create_app
    from puffin.core.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        app = create_app(Settings(data_dir=data_dir, tls=False))
        spec = app.openapi()
        app.state.puffin.engine.dispose()
    return [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method in operations
        if f"{method.upper()} {path}" not in SKIPPED
    ]


def _organisation_ids(document: Any) -> Iterator[Any]:
    """Yield every value under an `organisation_id` key, at any depth."""
    if isinstance(document, dict):
        for key, value in document.items():
            if key == "organisation_id":
                yield value
            yield from _organisation_ids(value)
    elif isinstance(document, list):
        for item in document:
            yield from _organisation_ids(item)


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type", "")
    return str(value[0] if isinstance(value, list) else value)  # Schemathesis keeps lists


def check_response(label: str, response: Any) -> None:
    """No server error; an error is a problem document with its reason."""
    status = response.status_code
    where = f"{label}: {status} {response.text[:300]}"
    assert status < 500, where
    if status < 400:
        return
    assert _content_type(response).startswith(PROBLEM_JSON), where
    body = response.json()
    assert body.get("status") == status, where
    assert isinstance(body.get("title"), str), where
    assert body["title"].strip(), where
    assert isinstance(body.get("detail"), str), where
    assert body["detail"].strip(), where


def check_scoped(label: str, response: Any, target: Target) -> None:
    """Organisation A's admin sees nothing of organisation B."""
    leaked = sorted(secret for secret in target.secrets if secret in response.text)
    assert leaked == [], f"{label}: organisation B leaked {leaked}"
    if response.status_code < 300 and label not in NOT_JSON and response.content:
        foreign = {o for o in _organisation_ids(json.loads(response.text)) if o != target.org_a}
        assert foreign == set(), f"{label}: answered for organisations {foreign}"


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", _labels())
def test_no_input_fails_the_server_or_crosses_organisations(fuzz_target, label, mode):
    target = fuzz_target
    operation = next(
        result.ok() for result in target.schema.get_all_operations() if result.ok().label == label
    )

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        as_site_admin = case.call(headers={"Authorization": f"Bearer {target.site_admin}"})
        check_response(label, as_site_admin)
        as_member = case.call(headers={"Authorization": f"Bearer {target.member}"})
        check_response(label, as_member)
        check_scoped(label, as_member, target)

    try:
        check()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body.
        assert mode == GenerationMode.NEGATIVE


def test_the_checks_catch_a_plain_error_and_a_leak(fuzz_target):
    """The checks above can fail: a bare JSON error and a foreign id are both caught."""

    class Answer:
        def __init__(self, status: int, body: Any, content_type: str) -> None:
            self.status_code = status
            self.text = json.dumps(body)
            self.content = self.text.encode()
            self.headers = {"content-type": content_type}

        def json(self) -> Any:
            return json.loads(self.text)

    with pytest.raises(AssertionError, match="404"):
        check_response("GET /x", Answer(404, {"detail": "Not Found"}, "application/json"))
    victim = next(iter(fuzz_target.secrets))
    with pytest.raises(AssertionError, match="leaked"):
        check_scoped("GET /x", Answer(200, {"name": victim}, "application/json"), fuzz_target)
    foreign = {"items": [{"organisation_id": "00000000-0000-0000-0000-000000000000"}]}
    with pytest.raises(AssertionError, match="answered for"):
        check_scoped("GET /x", Answer(200, foreign, "application/json"), fuzz_target)
