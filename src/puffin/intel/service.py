"""Use cases of the intel domain: record MISP fixer runs and read them back per organisation."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from puffin.core.errors import NotFound
from puffin.core.pagination import PageParams, paginate
from puffin.intel.models import MispFixerRun
from puffin.intel.schemas import RunCreate, RunDetail, RunFilter, RunPage, RunRead


class RunNotFound(NotFound):
    """No fixer run with this id in this organisation."""


def record_run(*, session: Session, organisation_id: uuid.UUID, run_in: RunCreate) -> RunDetail:
    """Store one run of the fixer and return it."""
    data: dict[str, Any] = run_in.model_dump(mode="json", exclude={"started_at", "finished_at"})
    run = MispFixerRun(
        organisation_id=organisation_id,
        started_at=run_in.started_at,
        finished_at=run_in.finished_at,
        false_positives=len(run_in.decisions),
        changes_count=len(run_in.changes),
        **data,
    )
    session.add(run)
    session.flush()
    return RunDetail.model_validate(run)


def list_runs(
    *, session: Session, organisation_id: uuid.UUID, run_filter: RunFilter, page: PageParams
) -> RunPage:
    """Return the organisation's runs, newest first, filtered."""
    query = _filtered(select(MispFixerRun), organisation_id, run_filter)
    return paginate(
        session,
        query,
        page=page,
        order_by=[MispFixerRun.started_at.desc(), MispFixerRun.id],
        read=RunRead.model_validate,
    )


def get_run(*, session: Session, organisation_id: uuid.UUID, run_id: uuid.UUID) -> RunDetail:
    """Return one run of the organisation with its decisions and changes, or raise."""
    run = session.get(MispFixerRun, run_id)
    if run is None or run.organisation_id != organisation_id:
        raise RunNotFound(f"no fixer run {run_id}")
    return RunDetail.model_validate(run)


def _filtered(query: Select[Any], organisation_id: uuid.UUID, run_filter: RunFilter) -> Select[Any]:
    query = query.where(MispFixerRun.organisation_id == organisation_id)
    if run_filter.status is not None:
        query = query.where(MispFixerRun.status == run_filter.status.value)
    if run_filter.event:
        event = run_filter.event.strip()
        query = query.where(or_(MispFixerRun.event_id == event, MispFixerRun.event_uuid == event))
    if run_filter.since is not None:
        query = query.where(MispFixerRun.started_at >= run_filter.since)
    if run_filter.until is not None:
        query = query.where(MispFixerRun.started_at < run_filter.until)
    if run_filter.with_false_positives:
        query = query.where(MispFixerRun.false_positives > 0)
    return query
