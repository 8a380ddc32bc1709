"""Searching stored events: time range, source, text and field filters, and a histogram."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from puffin.auth.dependencies import Reader
from puffin.core.clock import utcnow
from puffin.core.errors import InvalidInput, NotFound
from puffin.core.pagination import PageParams
from puffin.ingest.schemas import EventPage, EventRead, Histogram, HistogramBucket
from puffin.ingest.store import FIELD_NAME, EventQuery, EventStore

router = APIRouter(prefix="/events", tags=["events"])


def get_event_store(request: Request) -> EventStore:
    """Return the application's event store."""
    store: EventStore = request.app.state.puffin.extras["event_store"]
    return store


EventStoreDep = Annotated[EventStore, Depends(get_event_store)]


def _field_filters(fields: list[str]) -> tuple[tuple[str, str], ...]:
    parsed = []
    for item in fields:
        name, sep, value = item.partition("=")
        if not sep or not FIELD_NAME.fullmatch(name):
            raise InvalidInput(f"field filter {item!r} must look like name=value")
        parsed.append((name, value))
    return tuple(parsed)


def _query(
    principal: Reader,
    since: datetime | None,
    until: datetime | None,
    source_id: uuid.UUID | None,
    text: str | None,
    module: str | None,
    field: list[str],
) -> EventQuery:
    assert principal.organisation_id is not None
    if since and until and since > until:
        raise InvalidInput("since must be before until")
    return EventQuery(
        organisation_id=principal.organisation_id,
        since=since,
        until=until,
        source_id=source_id,
        text=text,
        module=module,
        fields=_field_filters(field),
    )


SinceQ = Annotated[datetime | None, Query(description="ISO 8601 time, inclusive")]
UntilQ = Annotated[datetime | None, Query(description="ISO 8601 time, inclusive")]
SourceQ = Annotated[uuid.UUID | None, Query(description="Agent or syslog source id")]
TextQ = Annotated[str | None, Query(max_length=200, description="Text in the raw log")]
ModuleQ = Annotated[str | None, Query(max_length=40)]
FieldQ = Annotated[list[str], Query(max_length=20, description="name=value, repeatable")]


@router.get("", response_model=EventPage)
def search_events(
    principal: Reader,
    store: EventStoreDep,
    page: Annotated[PageParams, Depends()],
    since: SinceQ = None,
    until: UntilQ = None,
    source_id: SourceQ = None,
    text: TextQ = None,
    module: ModuleQ = None,
    field: FieldQ = [],  # noqa: B006 - FastAPI copies defaults
) -> EventPage:
    """Search the organisation's events, newest first."""
    query = _query(principal, since, until, source_id, text, module, field)
    items = store.search(query, limit=page.limit, offset=page.offset)
    return EventPage(
        items=[_read(event) for event in items],
        total=store.count(query),
        offset=page.offset,
        limit=page.limit,
    )


@router.get("/histogram", response_model=Histogram)
def event_histogram(
    principal: Reader,
    store: EventStoreDep,
    since: SinceQ = None,
    until: UntilQ = None,
    source_id: SourceQ = None,
    text: TextQ = None,
    module: ModuleQ = None,
    field: FieldQ = [],  # noqa: B006 - FastAPI copies defaults
    buckets: Annotated[int, Query(ge=1, le=500)] = 60,
) -> Histogram:
    """Count matching events in equal time buckets (default: the last 24 hours)."""
    until = until or utcnow()
    since = since or until - timedelta(hours=24)
    query = _query(principal, since, until, source_id, text, module, field)
    counts = store.histogram(query, buckets=buckets)
    width = (until - since).total_seconds() / buckets
    return Histogram(
        since=since,
        until=until,
        bucket_seconds=width,
        buckets=[HistogramBucket(start=start, count=count) for start, count in counts],
    )


@router.get("/{event_id}", response_model=EventRead)
def get_event(
    event_id: Annotated[int, Path(ge=1, le=2**62)], principal: Reader, store: EventStoreDep
) -> EventRead:
    """Return one event."""
    assert principal.organisation_id is not None
    event = store.get(organisation_id=principal.organisation_id, event_id=event_id)
    if event is None:
        raise NotFound(f"event {event_id} not found")
    return _read(event)


def _read(event) -> EventRead:  # type: ignore[no-untyped-def]
    values = asdict(event)
    values.pop("organisation_id")
    return EventRead(**values)
