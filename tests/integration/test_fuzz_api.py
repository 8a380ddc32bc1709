"""Property-based fuzzing of every operation in the OpenAPI description: no input gives 5xx.

Schemathesis generates valid and invalid requests for each operation from the app's own
OpenAPI document; they are sent as a site admin, and a server error on any fails.
"""

from __future__ import annotations

import tempfile

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from tests.conftest import Puffin, start_puffin

from puffin.auth import service as auth_service
from puffin.core.db import transaction

SKIPPED = {"GET /api/v1/alerts/stream"}  # an endless stream; covered by its own test
EXAMPLES = 15


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory):
    app, announced = start_puffin(tmp_path_factory.mktemp("fuzz"))
    with TestClient(app) as client:
        password = announced[0].split("password: ")[1].strip()
        with transaction(app.state.puffin.session_factory) as session:
            default = auth_service.get_organisation_by_slug(session=session, slug="default")
        puffin = Puffin(client, password, default.id)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema, puffin.site_admin().key


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


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", _labels())
def test_no_input_makes_the_server_fail(fuzz_target, label, mode):
    schema, key = fuzz_target
    operation = next(
        result.ok() for result in schema.get_all_operations() if result.ok().label == label
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
        response = case.call(headers={"Authorization": f"Bearer {key}"})
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:300]}"

    try:
        check()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body.
        assert mode == GenerationMode.NEGATIVE
