"""Organisations: site admins create them; an organisation's admins edit it."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from puffin.auth import service as auth_service
from puffin.auth.dependencies import SessionDep
from puffin.auth.schemas import OrganisationCreate, OrganisationRead, OrganisationUpdate
from puffin.core.errors import Forbidden, NotFound, PuffinError
from puffin.core.pagination import PageParams
from puffin.web.deps import AdminConsole, FormDep, console_router
from puffin.web.forms import discard_changes, parse_form
from puffin.web.render import Console, render
from puffin.web.security import app_state, set_flash

router = console_router("/admin/organisations")


def _require_site_admin(console: Console) -> None:
    if not console.principal.is_site_admin:
        raise Forbidden("only a site admin may create organisations")


def _visible(console: Console, organisation_id: uuid.UUID) -> None:
    if not console.principal.is_site_admin and console.principal.organisation_id != organisation_id:
        raise NotFound(f"organisation {organisation_id} not found")


def _list_page(
    request: Request, console: Console, session: SessionDep, page: PageParams, **context: Any
) -> HTMLResponse:
    organisations = auth_service.list_organisations(
        session=session, principal=console.principal, page=page
    )
    status_code = context.pop("status_code", 200)
    return render(
        request,
        "admin/organisations.html",
        {"page": organisations, **context},
        console=console,
        section="admin",
        status_code=status_code,
    )


@router.get("", response_class=HTMLResponse)
def list_organisations(
    request: Request, console: AdminConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """List the organisations this admin may see."""
    return _list_page(request, console, session, PageParams(offset=max(offset, 0)))


@router.post("", response_class=HTMLResponse)
def create_organisation(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Create an organisation (site admins)."""
    _require_site_admin(console)
    org_in, errors = parse_form(OrganisationCreate, form)
    if org_in is None:
        return _list_page(
            request, console, session, PageParams(), errors=errors, values=form, status_code=422
        )
    try:
        created = auth_service.create_organisation(session=session, org_in=org_in)
    except PuffinError as error:
        discard_changes(session)
        return _list_page(
            request,
            console,
            session,
            PageParams(),
            form_error=error.detail,
            values=form,
            status_code=error.status_code,
        )
    response = RedirectResponse("/admin/organisations", status_code=303)
    set_flash(response, app_state(request), f"Created organisation {created.name}.")
    return response


def _edit_page(
    request: Request, console: Console, organisation: OrganisationRead, **context: Any
) -> HTMLResponse:
    status_code = context.pop("status_code", 200)
    values = context.pop("values", None) or organisation.model_dump()
    return render(
        request,
        "admin/organisation_edit.html",
        {"organisation": organisation, "values": values, **context},
        console=console,
        section="admin",
        status_code=status_code,
    )


@router.get("/{organisation_id}", response_class=HTMLResponse)
def edit_organisation_form(
    request: Request, organisation_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> HTMLResponse:
    """Show an organisation's settings."""
    _visible(console, organisation_id)
    organisation = auth_service.get_organisation(session=session, organisation_id=organisation_id)
    return _edit_page(request, console, organisation)


@router.post("/{organisation_id}", response_class=HTMLResponse)
def edit_organisation(
    request: Request,
    organisation_id: uuid.UUID,
    console: AdminConsole,
    session: SessionDep,
    form: FormDep,
) -> Response:
    """Rename, describe or (site admins) deactivate an organisation."""
    _visible(console, organisation_id)
    organisation = auth_service.get_organisation(session=session, organisation_id=organisation_id)
    extra: dict[str, Any] = {}
    if console.principal.is_site_admin:
        extra["is_active"] = form.get("is_active") == "on"
    org_in, errors = parse_form(OrganisationUpdate, form, optional_blank=False, **extra)
    if org_in is None:
        return _edit_page(
            request, console, organisation, errors=errors, values=form, status_code=422
        )
    try:
        updated = auth_service.update_organisation(
            session=session, organisation_id=organisation_id, org_in=org_in
        )
    except PuffinError as error:
        discard_changes(session)
        return _edit_page(
            request,
            console,
            organisation,
            form_error=error.detail,
            values=form,
            status_code=error.status_code,
        )
    response = RedirectResponse(f"/admin/organisations/{organisation_id}", status_code=303)
    set_flash(response, app_state(request), f"Saved organisation {updated.name}.")
    return response
