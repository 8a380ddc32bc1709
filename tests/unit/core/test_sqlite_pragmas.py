"""Every connection to the embedded SQLite database runs in WAL mode with foreign keys
enforced and a busy timeout, so concurrent writers wait instead of failing at once."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from puffin.core.db import SQLITE_BUSY_TIMEOUT_MS, make_engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'nested' / 'state.db'}")
    yield engine
    engine.dispose()


def test_each_connection_has_wal_foreign_keys_and_a_busy_timeout(engine, tmp_path):
    connections = [engine.connect(), engine.connect()]  # two pooled DBAPI connections
    try:
        for connection in connections:
            settings = {
                name: connection.execute(text(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
            assert settings == {
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
            }
    finally:
        for connection in connections:
            connection.close()
    assert (tmp_path / "nested" / "state.db-wal").exists()  # the directory was made too


def test_a_foreign_key_violation_is_refused(engine):
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        connection.execute(
            text("CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent)")
        )
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), engine.begin() as connection:
        connection.execute(text("INSERT INTO child (id, parent_id) VALUES (1, 42)"))
