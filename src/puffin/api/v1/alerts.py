"""Alerts: list with filters, detail, triage, comments and dashboard statistics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict

from puffin.alert import service as alert_service
from puffin.alert.schemas import (
    AlertChanges,
    AlertDetail,
    AlertFilter,
    AlertPage,
    AlertRead,
    AlertStats,
    AlertUpdate,
    CommentCreate,
    CommentRead,
)
from puffin.auth.dependencies import Analyst, Reader, SessionDep, StateDep, StreamingReader
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.pagination import PageParams

router = APIRouter(prefix="/alerts", tags=["alerts"])


class AlertQuery(AlertFilter):
    """The alert filters as query parameters, beside paging and stream parameters.

    FastAPI hands every query parameter to a query model, so the filter's own refusal of
    unknown fields would refuse `limit`, `offset` and `max_seconds` too.
    """

    model_config = ConfigDict(extra="ignore")


def _org(principal: Reader) -> uuid.UUID:
    assert principal.organisation_id is not None
    return principal.organisation_id


@router.get("", response_model=AlertPage)
def list_alerts(
    principal: Reader,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    alert_filter: Annotated[AlertQuery, Query()],
) -> AlertPage:
    """List alerts, newest activity first, filtered by level, rule, source, status, time, text."""
    return alert_service.list_alerts(
        session=session, organisation_id=_org(principal), alert_filter=alert_filter, page=page
    )


@router.get("/stats", response_model=AlertStats)
def alert_stats(
    principal: Reader,
    session: SessionDep,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    buckets: Annotated[int, Query(ge=1, le=500)] = 48,
) -> AlertStats:
    """Return the dashboard's figures: alerts over time, levels, top rules and sources, tactics."""
    until = utcnow()
    return alert_service.stats(
        session=session,
        organisation_id=_org(principal),
        since=until - timedelta(hours=hours),
        until=until,
        buckets=buckets,
    )


STREAM_POLL_SECONDS = 0.5
STREAM_BATCH = 200


@router.get("/stream", response_class=StreamingResponse)
async def alert_stream(
    principal: StreamingReader,
    state: StateDep,
    alert_filter: Annotated[AlertQuery, Query()],
    max_seconds: Annotated[float, Query(gt=0, le=3600)] = 3600,
) -> StreamingResponse:
    """Stream new and updated alerts as Server-Sent Events, filtered like the list.

    `event: alert` carries an alert that matches the filters; `event: gone` carries the id
    of an alert that changed and no longer matches them (closed under an "open" filter),
    so a filtered view can drop its row. Alerts of staged rules are left out unless the
    filter asks for them.
    """
    organisation_id = _org(principal)

    def changed_since(since: datetime) -> AlertChanges:
        with transaction(state.session_factory) as session:
            return alert_service.changed_since(
                session=session,
                organisation_id=organisation_id,
                alert_filter=alert_filter,
                since=since,
                limit=STREAM_BATCH,
            )

    async def events() -> AsyncIterator[str]:
        since = utcnow()
        deadline = asyncio.get_running_loop().time() + max_seconds
        yield "retry: 2000\n\n"
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(STREAM_POLL_SECONDS)
            changes = await asyncio.to_thread(changed_since, since)
            since = changes.until
            for alert in changes.matching:
                yield f"event: alert\ndata: {alert.model_dump_json()}\n\n"
            for alert_id in changes.gone:
                yield f'event: gone\ndata: {{"id": "{alert_id}"}}\n\n'
            yield ": keep-alive\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


@router.get("/{alert_id}", response_model=AlertDetail)
def get_alert(alert_id: uuid.UUID, principal: Reader, session: SessionDep) -> AlertDetail:
    """Return an alert with its raw event, matched fields and comments."""
    return alert_service.get_alert(
        session=session, organisation_id=_org(principal), alert_id=alert_id
    )


@router.patch("/{alert_id}", response_model=AlertRead)
def update_alert(
    alert_id: uuid.UUID, alert_in: AlertUpdate, principal: Analyst, session: SessionDep
) -> AlertRead:
    """Acknowledge, assign or close an alert."""
    return alert_service.update_alert(
        session=session, organisation_id=_org(principal), alert_id=alert_id, alert_in=alert_in
    )


@router.post(
    "/{alert_id}/comments", response_model=CommentRead, status_code=status.HTTP_201_CREATED
)
def add_comment(
    alert_id: uuid.UUID, comment_in: CommentCreate, principal: Analyst, session: SessionDep
) -> CommentRead:
    """Comment on an alert."""
    return alert_service.add_comment(
        session=session,
        organisation_id=_org(principal),
        alert_id=alert_id,
        author=principal.username,
        comment_in=comment_in,
    )
