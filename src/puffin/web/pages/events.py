"""Events: search by time range, agent, text and fields, with a volume histogram."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.auth.dependencies import SessionDep
from puffin.core.clock import utcnow
from puffin.core.errors import NotFound
from puffin.core.pagination import MAX_PAGE_SIZE, PageParams
from puffin.endpoint import service as endpoint_service
from puffin.ingest.store import FIELD_NAME, EventQuery, EventStore
from puffin.web.charts import time_bars
from puffin.web.deps import MemberConsole, console_router, organisation_of
from puffin.web.render import render

router = console_router("/events")

PAGE_SIZE = 50
RANGES = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
}


def _store(request: Request) -> EventStore:
    store: EventStore = request.app.state.puffin.extras["event_store"]
    return store


def _time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _parse(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    errors: dict[str, str] = {}
    until = utcnow()
    since = until - RANGES.get(values["range"], RANGES["24h"])
    for name in ("since", "until"):
        if values[name]:
            moment = _time(values[name])
            if moment is None:
                errors[name] = "Enter a date and time."
            elif name == "since":
                since = moment
            else:
                until = moment
    fields = []
    for line in values["fields"].splitlines():
        name, sep, value = line.strip().partition("=")
        if not line.strip():
            continue
        if not sep or not FIELD_NAME.fullmatch(name.strip()):
            errors["fields"] = f"Write one name=value per line ({line.strip()[:40]!r} is not)."
            break
        fields.append((name.strip(), value.strip()))
    if since >= until:
        errors["since"] = "The start must be before the end."
    return {"since": since, "until": until, "fields": tuple(fields)}, errors


@router.get("", response_class=HTMLResponse)
def events_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """Search events and draw their volume over time."""
    names = ("range", "since", "until", "source_id", "text", "fields")
    values = {name: request.query_params.get(name, "") for name in names}
    values["range"] = values["range"] or "24h"
    organisation_id = organisation_of(console)
    agents = endpoint_service.list_agents(
        session=session, organisation_id=organisation_id, page=PageParams(limit=MAX_PAGE_SIZE)
    ).items
    parsed, errors = _parse(values)
    source = next((a for a in agents if str(a.id) == values["source_id"]), None)
    if values["source_id"] and source is None:
        errors["source_id"] = "Choose an agent from the list."
    context: dict[str, Any] = {
        "values": values,
        "errors": errors,
        "agents": agents,
        "events": [],
        "chart": None,
        "total": 0,
        "names": {},
    }
    if not errors:
        query = EventQuery(
            organisation_id=organisation_id,
            since=parsed["since"],
            until=parsed["until"],
            source_id=source.id if source else None,
            text=values["text"] or None,
            fields=parsed["fields"],
        )
        store = _store(request)
        context["events"] = store.search(query, limit=PAGE_SIZE, offset=max(offset, 0))
        context["total"] = store.count(query)
        context["chart"] = time_bars(store.histogram(query, buckets=60))
        context["names"] = {a.id: a.name for a in agents}
    context["query"] = {k: v for k, v in values.items() if v}
    context["offset"] = max(offset, 0)
    context["page_size"] = PAGE_SIZE
    return render(
        request,
        "events/list.html",
        context,
        console=console,
        section="events",
        status_code=422 if errors else 200,
    )


@router.get("/{event_id}", response_class=HTMLResponse)
def event_page(
    request: Request, event_id: int, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show one event in full."""
    if not 1 <= event_id <= 2**62:
        raise NotFound(f"event {event_id} not found")
    event = _store(request).get(organisation_id=organisation_of(console), event_id=event_id)
    if event is None:
        raise NotFound(f"event {event_id} not found")
    return render(
        request,
        "events/detail.html",
        {
            "event": event,
            "event_json": json.dumps(event.data, indent=2, sort_keys=True, default=str),
        },
        console=console,
        section="events",
    )
