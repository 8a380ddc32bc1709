"""`puffin db upgrade` migrates a fresh database to the newest revision, and running it
again changes nothing, on SQLite and on PostgreSQL."""

from __future__ import annotations

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from typer.testing import CliRunner

from puffin.auth.models import Organisation
from puffin.cli.main import build_app
from puffin.core.db import make_engine, make_session_factory
from puffin.migrations.runner import alembic_config

runner = CliRunner()


def _puffin(url: str, *args: str):
    return runner.invoke(build_app(list(args)), list(args), env={"PUFFIN_DATABASE_URL": url})


def _schema(url: str) -> dict[str, list[str]]:
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        return {
            t: sorted(c["name"] for c in inspector.get_columns(t))
            for t in inspector.get_table_names()
        }
    finally:
        engine.dispose()


def test_upgrade_takes_a_fresh_database_to_head_and_a_rerun_is_a_no_op(tmp_path, backend):
    url = backend.empty_database_url(tmp_path)
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert head is not None
    data = ["--data-dir", str(tmp_path)]
    assert _puffin(url, "db", "current", *data).output.strip() == "empty"

    first = _puffin(url, "db", "upgrade", *data)
    assert first.exit_code == 0, first.output
    assert f"database at revision {head}" in first.output
    schema = _schema(url)
    assert {"alembic_version", "organisation", "user_account", "membership", "audit_entry"} <= set(
        schema
    )

    engine = make_engine(url)
    with make_session_factory(engine).begin() as session:
        session.add(Organisation(name="Kept", slug="kept"))

    again = _puffin(url, "db", "upgrade", *data)
    assert again.exit_code == 0, again.output
    assert f"database at revision {head}" in again.output
    assert _schema(url) == schema
    with engine.connect() as connection:
        assert connection.execute(text("SELECT slug FROM organisation")).scalars().all() == ["kept"]
        revisions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert revisions == [(head,)]
    assert _puffin(url, "db", "current", *data).output.strip() == head


def test_upgrade_to_an_unknown_revision_is_a_clear_error(tmp_path, backend):
    url = backend.empty_database_url(tmp_path)
    result = _puffin(url, "db", "upgrade", "--revision", "nonexistent", "--data-dir", str(tmp_path))
    assert result.exit_code == 1
    assert "migration failed" in result.output
    assert "Traceback" not in result.output
