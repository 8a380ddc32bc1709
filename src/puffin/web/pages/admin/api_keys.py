"""API keys: everyone lists their own, admins see all; a new key is shown once."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from puffin.auth import credentials
from puffin.auth import service as auth_service
from puffin.auth.dependencies import SessionDep
from puffin.auth.schemas import ApiKeyCreate
from puffin.core.errors import PuffinError
from puffin.core.pagination import MAX_PAGE_SIZE, PageParams
from puffin.web.deps import AnalystConsole, FormDep, MemberConsole, console_router, organisation_of
from puffin.web.forms import discard_changes, parse_form
from puffin.web.render import Console, render
from puffin.web.security import app_state, set_flash

router = console_router("/admin/api-keys")


def _owners(console: Console, session: SessionDep) -> dict[uuid.UUID, str]:
    if not console.is_admin:
        return {console.principal.user_id: console.principal.username}
    members = auth_service.list_users(
        session=session,
        organisation_id=organisation_of(console),
        page=PageParams(limit=MAX_PAGE_SIZE),
    )
    return {user.id: user.username for user in members.items}


def _list_page(
    request: Request,
    console: Console,
    session: SessionDep,
    *,
    everyone: bool,
    offset: int = 0,
    **context: Any,
) -> HTMLResponse:
    everyone = everyone and console.is_admin
    keys = credentials.list_api_keys(
        session=session,
        organisation_id=organisation_of(console),
        user_id=None if everyone else console.principal.user_id,
        page=PageParams(offset=offset),
    )
    status_code = context.pop("status_code", 200)
    return render(
        request,
        "admin/api_keys.html",
        {"page": keys, "everyone": everyone, "owners": _owners(console, session), **context},
        console=console,
        section="admin",
        status_code=status_code,
    )


@router.get("", response_class=HTMLResponse)
def list_api_keys(
    request: Request,
    console: MemberConsole,
    session: SessionDep,
    scope: str = "mine",
    offset: int = 0,
) -> HTMLResponse:
    """List my API keys, or every member's for admins."""
    return _list_page(request, console, session, everyone=scope == "all", offset=max(offset, 0))


@router.post("", response_class=HTMLResponse)
def create_api_key(
    request: Request, console: AnalystConsole, session: SessionDep, form: FormDep
) -> Response:
    """Create an API key and show it this one time."""
    fields = dict(form)
    if not console.is_admin:
        fields.pop("user_id", None)
    key_in, errors = parse_form(ApiKeyCreate, fields)
    if key_in is None:
        return _list_page(
            request, console, session, everyone=False, errors=errors, values=form, status_code=422
        )
    try:
        created = credentials.create_api_key(
            session=session, principal=console.principal, key_in=key_in
        )
    except PuffinError as error:
        discard_changes(session)
        return _list_page(
            request,
            console,
            session,
            everyone=False,
            form_error=error.detail,
            values=form,
            status_code=error.status_code,
        )
    owner = _owners(console, session).get(created.user_id, console.principal.username)
    return render(
        request,
        "admin/api_key_created.html",
        {"key": created, "owner": owner},
        console=console,
        section="admin",
        status_code=201,
    )


@router.post("/{key_id}/revoke", response_class=HTMLResponse)
def revoke_api_key(
    request: Request, key_id: uuid.UUID, console: AnalystConsole, session: SessionDep
) -> Response:
    """Revoke a key: my own, or any in the organisation for admins."""
    revoked = credentials.revoke_api_key(
        session=session,
        organisation_id=organisation_of(console),
        key_id=key_id,
        owner_id=None if console.is_admin else console.principal.user_id,
    )
    response = RedirectResponse("/admin/api-keys", status_code=303)
    set_flash(response, app_state(request), f"Revoked API key {revoked.name} ({revoked.prefix}…).")
    return response
