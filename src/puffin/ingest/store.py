"""The event store: high-volume events apart from state, written in batches with Core.

Events live in their own database (an `events.db` SQLite file by default, or their own
tables in PostgreSQL). Each stored event gets an increasing integer id, which is the
cursor detection reads from. A batch from an agent is stored with its sequence number in
the same transaction as its events, so a repeated batch is recognised and never stored
twice.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    cast,
    delete,
    func,
    insert,
    select,
    tuple_,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from puffin.core.clock import utcnow
from puffin.core.db import NAMING_CONVENTION
from puffin.core.types import UTCDateTime

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# On SQLite only INTEGER PRIMARY KEY is an auto-incrementing rowid alias.
_EventId = BigInteger().with_variant(Integer(), "sqlite")

event_table = Table(
    "event",
    metadata,
    Column("id", _EventId, primary_key=True, autoincrement=True),
    Column("organisation_id", String(36), nullable=False),
    Column("source_id", String(36), nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("event_time", UTCDateTime, nullable=False),
    Column("module", String(40), nullable=False),
    Column("location", String(500), nullable=False),
    Column("full_log", Text, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_event_org_time", "organisation_id", "event_time"),
    Index("ix_event_source_time", "source_id", "event_time"),
)

batch_table = Table(
    "ingest_batch",
    metadata,
    Column("source_id", String(36), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("stored_at", UTCDateTime, nullable=False),
    Column("event_count", Integer, nullable=False),
    PrimaryKeyConstraint("source_id", "sequence"),
)

MAX_FULL_LOG = 64 * 1024
FIELD_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,100}")


@dataclass(frozen=True)
class NewEvent:
    """An event to store: its canonical fields plus the envelope the store indexes."""

    data: Mapping[str, Any]
    event_time: datetime | None = None
    module: str = "log"
    location: str = ""
    full_log: str = ""


@dataclass(frozen=True)
class PendingBatch:
    """A sequence-numbered batch from one source, waiting to be stored."""

    organisation_id: uuid.UUID
    source_id: uuid.UUID
    sequence: int
    events: Sequence[NewEvent]


@dataclass(frozen=True)
class StoredEvent:
    """An event read back from the store, with its cursor id."""

    id: int
    organisation_id: uuid.UUID
    source_id: uuid.UUID
    received_at: datetime
    event_time: datetime
    module: str
    location: str
    full_log: str
    data: dict[str, Any]


@dataclass(frozen=True)
class BatchResult:
    """What happened to a batch: how many events were stored, or that it was a repeat."""

    stored: int
    duplicate: bool


@dataclass(frozen=True)
class EventQuery:
    """Filters for searching events of one organisation."""

    organisation_id: uuid.UUID
    since: datetime | None = None
    until: datetime | None = None
    source_id: uuid.UUID | None = None
    text: str | None = None
    module: str | None = None
    fields: tuple[tuple[str, str], ...] = ()


class EventStore:
    """Batched writes, cursor reads, search and retention over the event tables."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_schema(self) -> None:
        """Create the event tables if they do not exist."""
        metadata.create_all(self.engine)

    def append(
        self,
        *,
        organisation_id: uuid.UUID,
        source_id: uuid.UUID,
        events: Sequence[NewEvent],
        sequence: int | None = None,
    ) -> BatchResult:
        """Store events in one transaction; a batch whose sequence was seen is not stored."""
        received_at = utcnow()
        rows = [_row(organisation_id, source_id, received_at, event) for event in events]
        try:
            with self.engine.begin() as connection:
                if sequence is not None:
                    connection.execute(
                        insert(batch_table).values(
                            source_id=str(source_id),
                            sequence=sequence,
                            stored_at=received_at,
                            event_count=len(rows),
                        )
                    )
                _insert_many(connection, event_table, rows)
        except IntegrityError:
            if sequence is not None and self._batch_seen(source_id, sequence):
                return BatchResult(stored=0, duplicate=True)
            raise
        return BatchResult(stored=len(rows), duplicate=False)

    def append_many(self, batches: Sequence[PendingBatch]) -> list[BatchResult]:
        """Store several sources' batches in one transaction (group commit).

        A batch whose (source, sequence) was stored before, or appears twice in this
        call, is answered as a duplicate and not stored again.
        """
        received_at = utcnow()
        with self.engine.begin() as connection:
            seen = _sequences_seen(connection, batches)
            results: list[BatchResult] = []
            batch_rows: list[dict[str, Any]] = []
            event_rows: list[dict[str, Any]] = []
            for batch in batches:
                key = (str(batch.source_id), batch.sequence)
                if key in seen:
                    results.append(BatchResult(stored=0, duplicate=True))
                    continue
                seen.add(key)
                batch_rows.append(
                    {
                        "source_id": key[0],
                        "sequence": batch.sequence,
                        "stored_at": received_at,
                        "event_count": len(batch.events),
                    }
                )
                event_rows.extend(
                    _row(batch.organisation_id, batch.source_id, received_at, event)
                    for event in batch.events
                )
                results.append(BatchResult(stored=len(batch.events), duplicate=False))
            _insert_many(connection, batch_table, batch_rows)
            _insert_many(connection, event_table, event_rows)
        return results

    def _batch_seen(self, source_id: uuid.UUID, sequence: int) -> bool:
        with self.engine.connect() as connection:
            found = connection.execute(
                select(batch_table.c.sequence).where(
                    batch_table.c.source_id == str(source_id), batch_table.c.sequence == sequence
                )
            ).first()
        return found is not None

    def last_sequence(self, source_id: uuid.UUID) -> int | None:
        """Return the highest batch sequence stored for a source."""
        with self.engine.connect() as connection:
            value = connection.execute(
                select(func.max(batch_table.c.sequence)).where(
                    batch_table.c.source_id == str(source_id)
                )
            ).scalar()
        return int(value) if value is not None else None

    def read_after(self, cursor: int, limit: int = 1000) -> list[StoredEvent]:
        """Return events with an id above the cursor, oldest first (detection's feed)."""
        query = (
            select(event_table)
            .where(event_table.c.id > cursor)
            .order_by(event_table.c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        # A batch holds few organisations and sources: parse each id once, not per row.
        ids: dict[str, uuid.UUID] = {}
        return [
            StoredEvent(
                id=int(row.id),
                organisation_id=ids.get(row.organisation_id) or _parsed(ids, row.organisation_id),
                source_id=ids.get(row.source_id) or _parsed(ids, row.source_id),
                received_at=row.received_at,
                event_time=row.event_time,
                module=row.module,
                location=row.location,
                full_log=row.full_log,
                data=orjson.loads(row.data),
            )
            for row in rows
        ]

    def last_id(self) -> int:
        """Return the newest event id, or 0 when the store is empty."""
        with self.engine.connect() as connection:
            value = connection.execute(select(func.max(event_table.c.id))).scalar()
        return int(value or 0)

    def get(self, *, organisation_id: uuid.UUID, event_id: int) -> StoredEvent | None:
        """Return one event of this organisation."""
        query = select(event_table).where(
            event_table.c.id == event_id, event_table.c.organisation_id == str(organisation_id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).mappings().first()
        return _stored(row) if row else None

    def search(self, query: EventQuery, *, limit: int = 100, offset: int = 0) -> list[StoredEvent]:
        """Return events matching the query, newest first."""
        statement = (
            select(event_table)
            .where(*_conditions(query, self.engine.dialect.name))
            .order_by(event_table.c.event_time.desc(), event_table.c.id.desc())
            .offset(offset)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [_stored(row) for row in connection.execute(statement).mappings()]

    def count(self, query: EventQuery) -> int:
        """Return how many events match the query."""
        statement = (
            select(func.count())
            .select_from(event_table)
            .where(*_conditions(query, self.engine.dialect.name))
        )
        with self.engine.connect() as connection:
            return int(connection.execute(statement).scalar() or 0)

    def histogram(self, query: EventQuery, *, buckets: int = 60) -> list[tuple[datetime, int]]:
        """Return event counts in equal time buckets between the query's since and until."""
        until = query.until or utcnow()
        since = query.since or until - timedelta(hours=24)
        width = max((until - since).total_seconds() / buckets, 1.0)
        counts = [0] * buckets
        bounded = EventQuery(**{**query.__dict__, "since": since, "until": until})
        statement = select(event_table.c.event_time).where(
            *_conditions(bounded, self.engine.dialect.name)
        )
        with self.engine.connect() as connection:
            for (event_time,) in connection.execute(statement):
                index = int((event_time - since).total_seconds() // width)
                counts[min(max(index, 0), buckets - 1)] += 1
        return [(since + timedelta(seconds=width * i), counts[i]) for i in range(buckets)]

    def apply_retention(
        self,
        *,
        max_age: timedelta | None,
        max_events: int | None,
        max_bytes: int | None = None,
    ) -> int:
        """Delete events older than max_age, then the oldest beyond max_events and beyond
        max_bytes (see `stored_bytes`); return how many were deleted."""
        deleted = 0
        with self.engine.begin() as connection:
            if max_age is not None:
                cutoff = utcnow() - max_age
                result = connection.execute(
                    delete(event_table).where(event_table.c.received_at < cutoff)
                )
                deleted += result.rowcount or 0
            if max_events is not None:
                deleted += _trim_to(connection, max_events)
            if max_bytes is not None:
                deleted += _trim_to_bytes(connection, max_bytes)
        return deleted

    def stored_bytes(self) -> int:
        """Return the size of the stored events: the bytes of their log lines and fields.

        This is what size retention counts; the database also holds indexes and free
        pages, so its files are larger.
        """
        with self.engine.connect() as connection:
            size = _event_size(connection.dialect.name)
            return int(connection.execute(select(func.coalesce(func.sum(size), 0))).scalar() or 0)


SEEN_CHUNK = 400  # (source, sequence) pairs per query: 800 bound values, under every limit


def _sequences_seen(
    connection: Connection, batches: Sequence[PendingBatch]
) -> set[tuple[str, int]]:
    """The (source, sequence) pairs of these batches stored before, in few queries."""
    wanted = sorted({(str(batch.source_id), batch.sequence) for batch in batches})
    pair = tuple_(batch_table.c.source_id, batch_table.c.sequence)
    seen: set[tuple[str, int]] = set()
    for start in range(0, len(wanted), SEEN_CHUNK):
        rows = connection.execute(
            select(batch_table.c.source_id, batch_table.c.sequence).where(
                pair.in_(wanted[start : start + SEEN_CHUNK])
            )
        )
        seen.update((source_id, int(sequence)) for source_id, sequence in rows)
    return seen


SQLITE_MAX_VARIABLES = 999  # the smallest limit any SQLite build has on bound values


def _insert_many(connection: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows, many to a statement.

    On SQLite the rows go to the driver in multi-row statements, with each column's own
    bind processing done here instead of through the statement compiler for every row:
    the writer stores tens of thousands of rows a second. Other databases take
    SQLAlchemy's insert (which batches rows into multi-row VALUES there).
    """
    if not rows:
        return
    dialect = connection.dialect
    if dialect.name != "sqlite":
        connection.execute(insert(table), rows)
        return
    # The statement's text from SQLAlchemy's own compiler (qmark style), values in its order.
    compiled = insert(table).compile(dialect=dialect, column_keys=list(rows[0]))
    names = list(compiled.positiontup or ())
    processors = [
        _remembering(processor)
        if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        else None
        for name in names
    ]
    values = [
        value
        for row in rows
        for value in (
            row[name] if process is None else process(row[name])
            for name, process in zip(names, processors, strict=True)
        )
    ]
    # Many rows per statement: the driver lets go of the interpreter lock for every step
    # of a statement, and taking it back behind busy request threads is what made a
    # row-at-a-time executemany slow under load.
    head, _, one_row = str(compiled).partition(" VALUES ")
    width = len(names)
    per_statement = max(1, SQLITE_MAX_VARIABLES // width)
    for start in range(0, len(rows), per_statement):
        count = min(per_statement, len(rows) - start)
        text = f"{head} VALUES {', '.join([one_row] * count)}"
        connection.exec_driver_sql(text, tuple(values[start * width : (start + count) * width]))


def _remembering(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bind processor that converts each distinct value once (timestamps repeat a lot)."""
    seen: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            converted = seen[value] = processor(value)
            return converted
        except TypeError:  # not hashable
            return processor(value)

    return process


def _trim_to(connection: Connection, max_events: int) -> int:
    total = connection.execute(select(func.count()).select_from(event_table)).scalar() or 0
    excess = int(total) - max_events
    if excess <= 0:
        return 0
    boundary = connection.execute(
        select(event_table.c.id).order_by(event_table.c.id).offset(excess - 1).limit(1)
    ).scalar()
    result = connection.execute(delete(event_table).where(event_table.c.id <= boundary))
    return result.rowcount or 0


def _event_size(dialect: str) -> Any:
    """Return the SQL expression of one event's size in bytes (log line and fields)."""
    if dialect == "postgresql":
        return func.octet_length(event_table.c.full_log) + func.octet_length(event_table.c.data)
    # SQLite's length() counts characters of text, and bytes of a blob.
    return func.length(cast(event_table.c.full_log, LargeBinary)) + func.length(
        cast(event_table.c.data, LargeBinary)
    )


def _trim_to_bytes(connection: Connection, max_bytes: int) -> int:
    """Delete the oldest events until the newest ones left fit in max_bytes."""
    size = _event_size(connection.dialect.name)
    total = connection.execute(select(func.coalesce(func.sum(size), 0))).scalar() or 0
    if int(total) <= max_bytes:
        return 0
    newest_first = select(
        event_table.c.id, func.sum(size).over(order_by=event_table.c.id.desc()).label("running")
    ).subquery()
    boundary = connection.execute(
        select(func.max(newest_first.c.id)).where(newest_first.c.running > max_bytes)
    ).scalar()
    result = connection.execute(delete(event_table).where(event_table.c.id <= boundary))
    return result.rowcount or 0


def _conditions(query: EventQuery, dialect: str) -> list[Any]:
    conditions: list[Any] = [event_table.c.organisation_id == str(query.organisation_id)]
    if query.since is not None:
        conditions.append(event_table.c.event_time >= query.since)
    if query.until is not None:
        conditions.append(event_table.c.event_time <= query.until)
    if query.source_id is not None:
        conditions.append(event_table.c.source_id == str(query.source_id))
    if query.module:
        conditions.append(event_table.c.module == query.module)
    if query.text:
        conditions.append(_contains(event_table.c.full_log, query.text))
    for name, value in query.fields:
        conditions.append(func.lower(_json_field(dialect, name)) == value.lower())
    return [and_(*conditions)]


def _json_field(dialect: str, name: str) -> Any:
    """Return an expression for one top-level field of the event's JSON, as text."""
    if not FIELD_NAME.fullmatch(name):
        raise ValueError(f"invalid field name {name!r}")
    if dialect == "postgresql":
        return cast(event_table.c.data, JSONB)[name].astext
    return func.json_extract(event_table.c.data, f'$."{name}"')


def _contains(column: Any, needle: str) -> Any:
    escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")


def _row(
    organisation_id: uuid.UUID, source_id: uuid.UUID, received_at: datetime, event: NewEvent
) -> dict[str, Any]:
    return {
        "organisation_id": str(organisation_id),
        "source_id": str(source_id),
        "received_at": received_at,
        "event_time": event.event_time or received_at,
        "module": event.module[:40],
        "location": event.location[:500],
        "full_log": event.full_log[:MAX_FULL_LOG],
        "data": orjson.dumps(event.data, default=str).decode(),
    }


def _parsed(ids: dict[str, uuid.UUID], text: str) -> uuid.UUID:
    value = ids[text] = uuid.UUID(text)
    return value


def _stored(row: Any) -> StoredEvent:
    return StoredEvent(
        id=int(row["id"]),
        organisation_id=uuid.UUID(row["organisation_id"]),
        source_id=uuid.UUID(row["source_id"]),
        received_at=row["received_at"],
        event_time=row["event_time"],
        module=row["module"],
        location=row["location"],
        full_log=row["full_log"],
        data=orjson.loads(row["data"]),
    )


def new_events(items: Iterable[Mapping[str, Any]], *, module: str = "log") -> list[NewEvent]:
    """Wrap plain event mappings for storage, taking full_log and location from them."""
    return [
        NewEvent(
            data=item,
            module=str(item.get("module", module)),
            location=str(item.get("location", "")),
            full_log=str(item.get("full_log", "")),
        )
        for item in items
    ]
