"""Packaging keeps the agent light; settings refuse weak secrets and bad values."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from puffin.core.settings import Settings

PYPROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
SERVER_ONLY = {"fastapi", "sqlalchemy", "jinja2", "uvicorn", "alembic", "starlette"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower() for r in requirements}


def test_the_agent_install_pulls_no_web_or_database_stack():
    project = PYPROJECT["project"]
    agent = _names(project["dependencies"]) | _names(project["optional-dependencies"]["agent"])
    assert agent & SERVER_ONLY == set()
    assert "puffin-mdr" not in agent  # no extra that drags the server in


def test_the_server_extra_has_the_web_and_database_stack():
    server = _names(PYPROJECT["project"]["optional-dependencies"]["server"])
    assert {"fastapi", "sqlalchemy", "alembic", "argon2-cffi", "cryptography"} <= server


@pytest.mark.parametrize("weak", ["", "changeme", "secret", "puffin", "x" * 31])
def test_weak_secret_keys_are_refused_outside_development(weak, tmp_path):
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(data_dir=tmp_path, secret_key=weak)
    Settings(data_dir=tmp_path, secret_key=weak, environment="development")


@given(st.text(min_size=32, max_size=80).filter(lambda s: s.lower() not in {"changeme"}))
def test_long_secret_keys_are_accepted(secret):
    assert Settings(data_dir=Path("/tmp"), secret_key=secret).secret_key is not None


def test_certificate_and_key_come_together(tmp_path):
    with pytest.raises(ValidationError, match="together"):
        Settings(data_dir=tmp_path, tls_cert_file=tmp_path / "c.pem")


def test_unknown_settings_are_refused(tmp_path):
    with pytest.raises(ValidationError, match="databse_url"):
        Settings(data_dir=tmp_path, databse_url="sqlite://")


def test_environment_variables_override_the_file(tmp_path, monkeypatch):
    config = tmp_path / "puffin.toml"
    config.write_text("port = 9000\nhost = '0.0.0.0'\n")
    monkeypatch.setenv("PUFFIN_CONFIG", str(config))
    monkeypatch.setenv("PUFFIN_PORT", "9443")
    settings = Settings()
    assert (settings.port, settings.host) == (9443, "0.0.0.0")
