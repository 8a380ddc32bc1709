"""Run Alembic migrations from code (the CLI and the server's first start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent


def alembic_config(url: str) -> Config:
    """Return an Alembic configuration for this database URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade_database(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision`."""
    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    """Return the database's current revision, or None when it has none."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()
