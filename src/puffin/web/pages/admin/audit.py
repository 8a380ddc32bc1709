"""The audit trail: who changed what, newest first, with filters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.audit import service as audit_service
from puffin.audit.schemas import AuditFilter, AuditPage
from puffin.auth.dependencies import SessionDep
from puffin.core.errors import Forbidden
from puffin.core.pagination import PageParams
from puffin.web.deps import AdminConsole, console_router, organisation_of
from puffin.web.forms import parse_form
from puffin.web.render import render

router = console_router("/admin/audit")

PAGE_SIZE = 50
_FILTER_FIELDS = ("actor", "action", "object_type", "text", "since", "until")


def _as_utc(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # the form's datetime-local inputs are read as UTC
    return value


def _empty_page(offset: int) -> AuditPage:
    return AuditPage(items=[], total=0, offset=offset, limit=PAGE_SIZE)


@router.get("", response_class=HTMLResponse)
def audit_trail(
    request: Request, console: AdminConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """Show audit entries, newest first, narrowed by the filters in the query string."""
    values = {name: request.query_params.get(name, "") for name in _FILTER_FIELDS}
    everyone = request.query_params.get("scope") == "all"
    if everyone and not console.principal.is_site_admin:
        raise Forbidden("only a site admin may read every organisation's trail")
    audit_filter, errors = parse_form(AuditFilter, values)
    offset = max(offset, 0)
    page = _empty_page(offset)
    if audit_filter is not None:
        audit_filter = audit_filter.model_copy(
            update={"since": _as_utc(audit_filter.since), "until": _as_utc(audit_filter.until)}
        )
        page = audit_service.list_entries(
            session=session,
            organisation_id=None if everyone else organisation_of(console),
            audit_filter=audit_filter,
            page=PageParams(offset=offset, limit=PAGE_SIZE),
        )
    query: dict[str, Any] = {k: v for k, v in values.items() if v}
    if everyone:
        query["scope"] = "all"
    return render(
        request,
        "admin/audit.html",
        {"page": page, "values": values, "errors": errors, "query": query, "everyone": everyone},
        console=console,
        section="admin",
        status_code=422 if errors else 200,
    )
