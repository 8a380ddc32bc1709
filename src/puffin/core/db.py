"""Database engines, the declarative base and sessions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 10_000
# How long a request waits for a pooled connection before it is refused with 503 (a load
# error, see puffin.api.errors.is_busy). With the busy timeout this stays under the
# agents' 30 s request timeout, so an agent hears "busy, come back" rather than nothing.
POOL_TIMEOUT_SECONDS = 10.0
# PostgreSQL states that mean "busy, try again": lock_not_available, query_canceled
# (statement or lock timeout), too_many_connections, serialization_failure, deadlock.
_BUSY_SQLSTATES = frozenset({"55P03", "57014", "53300", "40001", "40P01"})
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")


def is_busy(error: BaseException) -> bool:
    """Whether a database error means load (a lock or pool wait ran out), not a fault."""
    if isinstance(error, PoolTimeout):
        return True
    if not isinstance(error, OperationalError):
        return False
    if getattr(error.orig, "sqlstate", None) in _BUSY_SQLSTATES:
        return True
    message = str(error.orig).lower()
    return any(text in message for text in _BUSY_MESSAGES)


class Base(DeclarativeBase):
    """Declarative base of every state table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)  # a queue pool
            # Connections beyond the pool are closed when given back and opened again (with
            # their pragmas) on the next burst: keep enough for the request threads.
            kwargs.setdefault("pool_size", 20)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, **kwargs
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    kwargs.setdefault("pool_timeout", POOL_TIMEOUT_SECONDS)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory bound to the engine."""
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Yield a session that commits when the block ends and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
