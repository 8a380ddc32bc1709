"""The event store keeps batches exactly once, reads by cursor, searches and expires."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest

from puffin.core.clock import utcnow
from puffin.core.db import make_engine
from puffin.ingest.store import EventQuery, EventStore, NewEvent


@pytest.fixture
def store(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'events.db'}")
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
