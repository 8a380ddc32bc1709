"""The event store keeps batches exactly once, reads by cursor, searches and expires, on its
own SQLite file and on PostgreSQL tables alike."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from pydantic import ValidationError

from puffin.core.clock import utcnow
from puffin.core.db import make_engine
from puffin.core.settings import Settings
from puffin.ingest.store import EventQuery, EventStore, NewEvent


@pytest.fixture
def store(tmp_path, database_url):
    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'events.db'}")
    event_store = EventStore(engine)
    event_store.create_schema()
    yield event_store
    engine.dispose()


ORG = uuid.uuid4()
OTHER_ORG = uuid.uuid4()
AGENT = uuid.uuid4()


def _events(count: int, prefix: str = "line") -> list[NewEvent]:
    return [
        NewEvent(
            data={"program": "sshd", "n": i}, full_log=f"{prefix} {i}", location="/var/log/auth.log"
        )
        for i in range(count)
    ]


def test_a_repeated_batch_is_stored_once(store):
    first = store.append(organisation_id=ORG, source_id=AGENT, events=_events(3), sequence=7)
    again = store.append(organisation_id=ORG, source_id=AGENT, events=_events(3), sequence=7)
    assert (first.stored, first.duplicate) == (3, False)
    assert (again.stored, again.duplicate) == (0, True)
    assert store.count(EventQuery(organisation_id=ORG)) == 3
    assert store.last_sequence(AGENT) == 7


def test_cursor_reads_every_event_once_in_order(store):
    for sequence in range(5):
        store.append(organisation_id=ORG, source_id=AGENT, events=_events(10), sequence=sequence)
    seen: list[int] = []
    cursor = 0
    while batch := store.read_after(cursor, limit=7):
        seen.extend(event.id for event in batch)
        cursor = batch[-1].id
    assert len(seen) == 50
    assert seen == sorted(set(seen))


def test_concurrent_writers_lose_nothing(store):
    def writer(source: uuid.UUID) -> None:
        for sequence in range(20):
            store.append(
                organisation_id=ORG, source_id=source, events=_events(25), sequence=sequence
            )

    threads = [threading.Thread(target=writer, args=(uuid.uuid4(),)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count(EventQuery(organisation_id=ORG)) == 4 * 20 * 25


def test_search_is_scoped_to_the_organisation_and_filters(store):
    store.append(organisation_id=ORG, source_id=AGENT, events=_events(3, "accepted"))
    store.append(organisation_id=OTHER_ORG, source_id=AGENT, events=_events(4, "accepted"))
    found = store.search(EventQuery(organisation_id=ORG, text="ACCEPTED 1"))
    assert [event.full_log for event in found] == ["accepted 1"]
    by_field = store.search(EventQuery(organisation_id=ORG, fields=(("program", "sshd"),)))
    assert len(by_field) == 3
    assert store.get(organisation_id=OTHER_ORG, event_id=found[0].id) is None


def test_histogram_counts_events_in_their_buckets(store):
    now = utcnow()
    events = [NewEvent(data={}, event_time=now - timedelta(minutes=m)) for m in (1, 1, 30, 59)]
    store.append(organisation_id=ORG, source_id=AGENT, events=events)
    buckets = store.histogram(
        EventQuery(organisation_id=ORG, since=now - timedelta(hours=1), until=now), buckets=6
    )
    assert sum(count for _, count in buckets) == 4
    assert buckets[-1][1] == 2


def test_retention_by_count_keeps_the_newest(store):
    store.append(organisation_id=ORG, source_id=AGENT, events=_events(10))
    deleted = store.apply_retention(max_age=None, max_events=4)
    remaining = store.read_after(0)
    assert deleted == 6
    assert [event.data["n"] for event in remaining] == [6, 7, 8, 9]


def test_retention_by_age_deletes_old_events(store):
    store.append(organisation_id=ORG, source_id=AGENT, events=_events(2))
    assert store.apply_retention(max_age=timedelta(days=1), max_events=None) == 0
    assert store.apply_retention(max_age=timedelta(seconds=-1), max_events=None) == 2


def _sized_events(count: int) -> list[NewEvent]:
    # "é" is two bytes in UTF-8: size retention must count bytes, not characters.
    return [NewEvent(data={"n": i}, full_log=f"{i:03d} " + "é" * 500) for i in range(count)]


def test_retention_by_size_keeps_the_newest_events_that_fit(store):
    store.append(organisation_id=ORG, source_id=AGENT, events=_sized_events(10))
    one_event = store.stored_bytes() / 10
    assert one_event > 1000  # bytes of UTF-8, not characters
    assert store.apply_retention(max_age=None, max_events=None, max_bytes=10**9) == 0
    deleted = store.apply_retention(max_age=None, max_events=None, max_bytes=int(one_event * 4.5))
    assert deleted == 6
    assert [event.data["n"] for event in store.read_after(0)] == [6, 7, 8, 9]
    assert store.stored_bytes() <= one_event * 4.5


def test_age_count_and_size_limits_apply_together(store):
    store.append(organisation_id=ORG, source_id=AGENT, events=_sized_events(10))
    one_event = store.stored_bytes() / 10
    deleted = store.apply_retention(
        max_age=timedelta(days=1), max_events=8, max_bytes=int(one_event * 5.5)
    )
    assert deleted == 5
    assert [event.data["n"] for event in store.read_after(0)] == [5, 6, 7, 8, 9]
    assert store.apply_retention(max_age=timedelta(seconds=-1), max_events=None) == 5
    assert store.stored_bytes() == 0


def test_the_size_limit_is_a_setting_with_units():
    assert (
        Settings(environment="test", event_retention_max_bytes="2GiB").event_retention_max_bytes
        == 2 * 1024**3
    )
    assert Settings(environment="test").event_retention_max_bytes is None
    with pytest.raises(ValidationError, match="event_retention_max_bytes"):
        Settings(environment="test", event_retention_max_bytes="12")
