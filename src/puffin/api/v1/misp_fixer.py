"""MISP event fixer runs: the list with filters, and one run with its decisions and changes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from puffin.auth.dependencies import Reader, SessionDep
from puffin.core.pagination import PageParams
from puffin.intel import service as intel_service
from puffin.intel.schemas import RunDetail, RunFilter, RunPage

router = APIRouter(prefix="/misp-fixer", tags=["misp-fixer"])


def _org(principal: Reader) -> uuid.UUID:
    assert principal.organisation_id is not None
    return principal.organisation_id


@router.get("/runs", response_model=RunPage)
def list_runs(
    principal: Reader,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    run_filter: Annotated[RunFilter, Query()],
) -> RunPage:
    """List the fixer's runs, newest first, by status, event, time and false positives."""
    return intel_service.list_runs(
        session=session, organisation_id=_org(principal), run_filter=run_filter, page=page
    )


@router.get("/runs/{run_id}", response_model=RunDetail)
def get_run(principal: Reader, session: SessionDep, run_id: uuid.UUID) -> RunDetail:
    """Return one run with each false-positive decision and each change applied."""
    return intel_service.get_run(session=session, organisation_id=_org(principal), run_id=run_id)
