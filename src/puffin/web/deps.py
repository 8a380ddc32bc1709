"""Page-level dependencies: the signed-in user (or a redirect to sign in), roles, form CSRF."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.responses import Response

from puffin.auth import credentials
from puffin.auth import service as auth_service
from puffin.auth.dependencies import CSRF_HEADER, SESSION_COOKIE, SessionDep
from puffin.auth.schemas import Principal, Role
from puffin.core.changes import Actor, set_actor
from puffin.core.crypto import tokens_equal
from puffin.core.errors import Forbidden, NotFound, PuffinError, Unauthenticated
from puffin.core.pagination import MAX_PAGE_SIZE, PageParams
from puffin.web.errors import render_error
from puffin.web.render import Console, OrganisationChoice
from puffin.web.security import CSRF_FIELD, safe_next


class SignInRequired(Exception):
    """Raised by a page dependency when nobody is signed in; the route redirects to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _bad_address(request: Request, error: RequestValidationError) -> Response:
    if any(item["loc"][:1] == ("path",) for item in error.errors()):
        return render_error(request, 404, "Not found", "There is no such page.")
    fields = ", ".join(sorted({str(item["loc"][-1]) for item in error.errors()}))
    return render_error(request, 400, "Bad request", f"These parameters are not valid: {fields}.")


class ConsoleRoute(APIRoute):
    """A route that turns 'sign in first' into a redirect and domain errors into pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap the handler so console pages never answer with JSON problems."""
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as needed:
                target = "/login?next=" + quote(needed.next_path, safe="/")
                return RedirectResponse(target, status_code=303)
            except PuffinError as error:
                return render_error(request, error.status_code, error.title, error.detail)
            except RequestValidationError as error:
                return _bad_address(request, error)

        return console_handler


def console_router(prefix: str = "") -> APIRouter:
    """Return a router for console pages."""
    return APIRouter(prefix=prefix, include_in_schema=False, route_class=ConsoleRoute)


async def read_form(request: Request) -> dict[str, str]:
    """Return the submitted form's text fields (empty for GET)."""
    if request.method != "POST":
        return {}
    form = await request.form()
    return {key: value for key, value in form.multi_items() if isinstance(value, str)}


FormDep = Annotated[dict[str, str], Depends(read_form)]


def _next_path(request: Request) -> str:
    if request.method != "GET":
        return "/"
    query = f"?{request.url.query}" if request.url.query else ""
    return safe_next(request.url.path + query)


def _check_form_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    sent = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER, "")
    if not sent or not tokens_equal(sent, expected):
        raise Forbidden("the form's security token is missing or stale; reload the page and retry")


def _choices(session: Session, principal: Principal) -> list[OrganisationChoice]:
    if principal.is_site_admin:
        page = auth_service.list_organisations(
            session=session, principal=principal, page=PageParams(limit=MAX_PAGE_SIZE)
        )
        roles = {
            m.organisation_id: str(m.role)
            for m in auth_service.memberships_of(session=session, user_id=principal.user_id)
        }
        return [OrganisationChoice(o.id, o.name, roles.get(o.id, "site admin")) for o in page.items]
    memberships = auth_service.memberships_of(session=session, user_id=principal.user_id)
    return [
        OrganisationChoice(m.organisation_id, m.organisation_name, str(m.role)) for m in memberships
    ]


def current_console(request: Request, session: SessionDep, form: FormDep) -> Console:
    """Return the signed-in user; check the CSRF token of every form they post."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired(_next_path(request))
    try:
        info = credentials.resume_session(session=session, token=token)
    except Unauthenticated as error:
        raise SignInRequired(_next_path(request)) from error
    if request.method != "GET":
        _check_form_csrf(request, form, info.csrf_token)
    principal = info.principal
    ip = request.client.host if request.client else None
    set_actor(session, Actor(kind="user", id=principal.user_id, name=principal.username, ip=ip))
    organisation = (
        auth_service.get_organisation(session=session, organisation_id=principal.organisation_id)
        if principal.organisation_id
        else None
    )
    console = Console(
        principal=principal,
        csrf_token=info.csrf_token,
        session_token=token,
        organisation=organisation,
        choices=_choices(session, principal),
    )
    request.state.console = console
    return console


ConsoleDep = Annotated[Console, Depends(current_console)]


def require_console_role(role: Role) -> Callable[[Console], Console]:
    """Return a dependency that refuses users below `role` in the current organisation."""

    def check(console: ConsoleDep) -> Console:
        principal = console.principal
        if principal.organisation_id is None:
            raise NotFound("no organisation selected; choose one with the switcher at the top")
        if not principal.has_role(role):
            raise Forbidden(f"this page needs the {role} role in {console.organisation_name}")
        return console

    return check


MemberConsole = Annotated[Console, Depends(require_console_role(Role.READ_ONLY))]
AnalystConsole = Annotated[Console, Depends(require_console_role(Role.ANALYST))]
AdminConsole = Annotated[Console, Depends(require_console_role(Role.ADMIN))]


def organisation_of(console: Console) -> uuid.UUID:
    """Return the current organisation's id (the role dependencies guarantee one)."""
    organisation_id = console.principal.organisation_id
    if organisation_id is None:
        raise NotFound("no organisation selected; choose one with the switcher at the top")
    return organisation_id
