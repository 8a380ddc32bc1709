"""Storage on SQLite and PostgreSQL: migrations match the models, types round-trip,
constraints hold, and the event store behaves the same."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from puffin.auth.models import Membership, Organisation, User
from puffin.core.db import Base, make_engine, make_session_factory
from puffin.ingest.store import EventQuery, EventStore, NewEvent, PendingBatch
from puffin.migrations import models_index  # noqa: F401 - every table
from puffin.migrations.runner import upgrade_database


@pytest.fixture
def engine(tmp_path, database_url):
    url = database_url or f"sqlite:///{tmp_path / 'state.db'}"
    upgrade_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_migrations_create_exactly_the_models_schema(tmp_path, backend):
    url = backend.empty_database_url(tmp_path)  # not the test template: it has event tables
    upgrade_database(url)
    engine = make_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert differences == [], "a model changed without a migration: run alembic revision"


def test_uuid_utc_and_json_columns_round_trip(engine):
    factory = make_session_factory(engine)
    org_id = uuid.uuid4()
    moment = datetime(2026, 11, 22, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with factory.begin() as session:
        session.add(Organisation(id=org_id, name="Acme", slug="acme", created_at=moment))
    with factory() as session:
        org = session.get(Organisation, org_id)
        assert org is not None
        assert org.id == org_id
        assert org.created_at == moment
        assert org.created_at.tzinfo == UTC


def test_unique_names_and_cascading_deletes(engine):
    factory = make_session_factory(engine)
    with factory.begin() as session:
        org = Organisation(name="Acme", slug="acme")
        user = User(username="ann")
        session.add_all([org, user])
        session.flush()
        session.add(Membership(user_id=user.id, organisation_id=org.id, role="admin"))
    with pytest.raises(IntegrityError), factory.begin() as session:
        session.add(Organisation(name="Acme", slug="acme-2"))
    with factory.begin() as session:
        session.delete(session.scalars(select(Organisation)).one())
    with factory() as session:
        assert session.scalars(select(Membership)).all() == []


def test_event_store_group_commit_deduplicates_on_every_database(engine):
    store = EventStore(engine)
    store.create_schema()
    org, source = uuid.uuid4(), uuid.uuid4()
    batch = PendingBatch(org, source, 1, [NewEvent(data={"user": "root"}, full_log="x")])
    results = store.append_many([batch, batch])
    assert [(r.stored, r.duplicate) for r in results] == [(1, False), (0, True)]
    assert store.append_many([batch])[0].duplicate
    assert store.count(EventQuery(organisation_id=org, fields=(("user", "ROOT"),))) == 1
