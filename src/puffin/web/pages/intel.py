"""Intel: the MISP event fixer's runs with filters, and one run's decisions and changes."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from puffin.auth.dependencies import SessionDep
from puffin.core.pagination import PageParams
from puffin.intel import service as intel_service
from puffin.intel.schemas import RunFilter, RunPage, RunStatus
from puffin.web.deps import MemberConsole, console_router, organisation_of
from puffin.web.forms import parse_form
from puffin.web.render import render

router = console_router("/intel")

PAGE_SIZE = 50
DETAIL_ROWS = 500  # a run on 40,000 attributes has tens of thousands of changes; the API has all
RUNS_PATH = "/intel/misp-fixer"
_FILTERS = ("status", "event", "since", "until", "with_false_positives")


@router.get("", response_class=RedirectResponse, status_code=303)
def intel_home(console: MemberConsole) -> RedirectResponse:
    """Open the section's only page so far, the MISP fixer's runs."""
    return RedirectResponse(RUNS_PATH, status_code=303)


@router.get("/misp-fixer", response_class=HTMLResponse)
def runs_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """Show the fixer's runs, newest first, filtered by status, event, time and findings."""
    values = {name: request.query_params.get(name, "") for name in _FILTERS}
    run_filter, errors = parse_form(RunFilter, values)
    page = RunPage(items=[], total=0, offset=0, limit=PAGE_SIZE)
    if run_filter is not None:
        page = intel_service.list_runs(
            session=session,
            organisation_id=organisation_of(console),
            run_filter=run_filter,
            page=PageParams(offset=max(offset, 0), limit=PAGE_SIZE),
        )
    query: dict[str, Any] = {k: v for k, v in values.items() if v}
    return render(
        request,
        "intel/runs.html",
        {
            "page": page,
            "values": values,
            "errors": errors,
            "query": query,
            "status_options": [("", "any")] + [(s.value, s.value) for s in RunStatus],
        },
        console=console,
        section="intel",
        status_code=422 if errors else 200,
    )


@router.get("/misp-fixer/runs/{run_id}", response_class=HTMLResponse)
def run_page(
    request: Request, run_id: uuid.UUID, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show one run: its figures, errors, each false-positive decision and each change."""
    run = intel_service.get_run(
        session=session, organisation_id=organisation_of(console), run_id=run_id
    )
    context = {
        "run": run,
        "shown": DETAIL_ROWS,
        "changes_by_kind": sorted(Counter(change.kind for change in run.changes).items()),
    }
    return render(request, "intel/run.html", context, console=console, section="intel")
