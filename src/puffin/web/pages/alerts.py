"""Alerts: a filtered list that updates live, and a detail page for triage."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from puffin.alert import service as alert_service
from puffin.alert.schemas import (
    AlertFilter,
    AlertPage,
    AlertStatus,
    AlertUpdate,
    CommentCreate,
    StagedFilter,
)
from puffin.auth.dependencies import SessionDep
from puffin.core.errors import InvalidInput
from puffin.core.pagination import PageParams
from puffin.web.deps import AnalystConsole, FormDep, MemberConsole, console_router, organisation_of
from puffin.web.forms import discard_changes, parse_form
from puffin.web.render import Console, render
from puffin.web.security import set_flash

router = console_router("/alerts")

PAGE_SIZE = 50
_FILTERS = ("level", "rule_id", "agent", "status", "staged", "text", "since", "until")
STREAM_URL = "/api/v1/alerts/stream"
STAGED_OPTIONS = [
    ("", "hidden (forwarded alerts only)"),
    (StagedFilter.ONLY.value, "staged rules only (stored, not forwarded)"),
    (StagedFilter.INCLUDE.value, "shown beside the others"),
]


@router.get("", response_class=HTMLResponse)
def alerts_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """Show alerts, newest activity first, with filters; new ones arrive live."""
    values = {name: request.query_params.get(name, "") for name in _FILTERS}
    alert_filter, errors = _alert_filter(values)
    page = AlertPage(items=[], total=0, offset=0, limit=PAGE_SIZE)
    if alert_filter is not None:
        page = alert_service.list_alerts(
            session=session,
            organisation_id=organisation_of(console),
            alert_filter=alert_filter,
            page=PageParams(offset=max(offset, 0), limit=PAGE_SIZE),
        )
    query: dict[str, Any] = {k: v for k, v in values.items() if v}
    return render(
        request,
        "alerts/list.html",
        {
            "page": page,
            "values": values,
            "errors": errors,
            "query": query,
            "status_options": [("", "any"), ("open", "open (new or acknowledged)")]
            + [(s.value, s.value) for s in AlertStatus],
            "staged_options": STAGED_OPTIONS,
            "showing_staged": alert_filter is not None
            and alert_filter.staged is not StagedFilter.EXCLUDE,
            # Later pages are a snapshot; the first page follows the same filters live.
            "live_url": _stream_url(alert_filter) if alert_filter and offset <= 0 else None,
        },
        console=console,
        section="alerts",
        status_code=422 if errors else 200,
    )


def _alert_filter(values: dict[str, str]) -> tuple[AlertFilter | None, dict[str, str]]:
    """Return the filter the form asks for (status "open" means new or acknowledged)."""
    open_only = values["status"] == "open"
    form = {k: v for k, v in values.items() if not (k == "status" and open_only)}
    alert_filter, errors = parse_form(AlertFilter, form)
    if alert_filter is None:
        return None, errors
    return alert_filter.model_copy(update={"open_only": open_only}), errors


def _stream_url(alert_filter: AlertFilter) -> str:
    """Return the event stream's address with the same filters, for the page's live rows."""
    params = alert_filter.model_dump(mode="json", exclude_defaults=True)
    return f"{STREAM_URL}?{urlencode(params)}" if params else STREAM_URL


@router.get("/{alert_id}", response_class=HTMLResponse)
def alert_page(
    request: Request, alert_id: uuid.UUID, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show an alert with its matched fields, raw event and comments."""
    return _detail(request, alert_id, console, session)


def _detail(
    request: Request,
    alert_id: uuid.UUID,
    console: Console,
    session: Session,
    form_error: str | None = None,
) -> HTMLResponse:
    alert = alert_service.get_alert(
        session=session, organisation_id=organisation_of(console), alert_id=alert_id
    )
    return render(
        request,
        "alerts/detail.html",
        {
            "alert": alert,
            "event_json": json.dumps(alert.event, indent=2, sort_keys=True, default=str),
            "statuses": [s.value for s in AlertStatus],
            "form_error": form_error,
        },
        console=console,
        section="alerts",
        status_code=422 if form_error else 200,
    )


@router.post("/{alert_id}", response_class=HTMLResponse, response_model=None)
def triage(
    request: Request,
    alert_id: uuid.UUID,
    console: AnalystConsole,
    session: SessionDep,
    form: FormDep,
) -> HTMLResponse | RedirectResponse:
    """Change status or assignee, or add a comment."""
    organisation_id = organisation_of(console)
    try:
        if form.get("comment", "").strip():
            comment = CommentCreate(text=form["comment"].strip())
            alert_service.add_comment(
                session=session,
                organisation_id=organisation_id,
                alert_id=alert_id,
                author=console.principal.username,
                comment_in=comment,
            )
        update, errors = parse_form(
            AlertUpdate, {k: form.get(k, "") for k in ("status", "assignee")}
        )
        if update is None:
            raise InvalidInput("; ".join(f"{k}: {v}" for k, v in errors.items()))
        if update.model_fields_set:
            alert_service.update_alert(
                session=session, organisation_id=organisation_id, alert_id=alert_id, alert_in=update
            )
    except (InvalidInput, ValidationError) as error:
        discard_changes(session)
        detail = error.detail if isinstance(error, InvalidInput) else "the comment is too long"
        return _detail(request, alert_id, console, session, form_error=detail)
    redirect = RedirectResponse(f"/alerts/{alert_id}", status_code=303)
    set_flash(redirect, request.app.state.puffin, "Alert updated.")
    return redirect
