"""Every integration test runs on each database its module uses (see tests/conftest.py)."""

from __future__ import annotations

import pytest
from tests.conftest import Backend


@pytest.fixture(autouse=True)
def _on_each_backend(backend: Backend) -> Backend:
    """Point every `Settings` the test builds at this run's database."""
    return backend
