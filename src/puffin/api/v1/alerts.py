"""Alerts: list with filters, detail, triage, comments and dashboard statistics."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from fastapi.responses import StreamingResponse

from puffin.alert import service as alert_service
from puffin.alert.schemas import (
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


def _org(principal: Reader) -> uuid.UUID:
    assert principal.organisation_id is not None
    return principal.organisation_id


@router.get("", response_model=AlertPage)
def list_alerts(
    principal: Reader,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    alert_filter: Annotated[AlertFilter, Query()],
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


@router.get("/stream", response_class=StreamingResponse)
async def alert_stream(
    principal: StreamingReader,
    state: StateDep,
    max_seconds: Annotated[float, Query(gt=0, le=3600)] = 3600,
) -> StreamingResponse:
    """Stream new and updated alerts as Server-Sent Events (`event: alert`)."""
    organisation_id = _org(principal)

    def changed_since(since: datetime) -> list[AlertRead]:
        with transaction(state.session_factory) as session:
            page = alert_service.list_alerts(
                session=session,
                organisation_id=organisation_id,
                alert_filter=AlertFilter(updated_since=since),
                page=PageParams(limit=200),
            )
        return page.items

    async def events() -> AsyncIterator[str]:
        since = utcnow()
        deadline = asyncio.get_running_loop().time() + max_seconds
        yield "retry: 2000\n\n"
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(STREAM_POLL_SECONDS)
            items = await asyncio.to_thread(changed_since, since)
            for alert in sorted(items, key=lambda a: a.updated_at):
                since = max(since, alert.updated_at)
                yield f"event: alert\ndata: {alert.model_dump_json()}\n\n"
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
