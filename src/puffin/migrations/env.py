"""Alembic environment: every model's metadata, batch mode on SQLite."""

from __future__ import annotations

from alembic import context

from puffin.core.db import Base, make_engine
from puffin.migrations import models_index  # noqa: F401 - registers every table

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    """Run migrations against a live connection."""
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `puffin db upgrade`")
run_migrations_online()
