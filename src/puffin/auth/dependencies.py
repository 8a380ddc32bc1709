"""Request dependencies shared by the API and the console: sessions, the caller, roles.

They live with the auth domain because both `api` and `web` need them and may not import
each other.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from puffin.auth import credentials
from puffin.auth.schemas import Principal, Role
from puffin.core.changes import Actor, set_actor
from puffin.core.crypto import tokens_equal
from puffin.core.db import transaction
from puffin.core.errors import Forbidden, NotFound, Unauthenticated
from puffin.core.state import AppState

SESSION_COOKIE = "puffin_session"
CSRF_HEADER = "x-csrf-token"
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def get_state(request: Request) -> AppState:
    """Return the application's state."""
    state: AppState = request.app.state.puffin
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(request: Request, state: StateDep) -> Iterator[Session]:
    """Yield a database session that commits when the endpoint returns.

    `SessionDep` runs this with FastAPI's "function" scope, so the commit happens before
    the response is sent: a client that reads right after a 2xx or a redirect sees its
    change, and a failed commit becomes an error response instead of a lost write. (The
    default "request" scope commits only after the response has gone out.)
    """
    session = state.session_factory()
    session.info["client_ip"] = request.client.host if request.client else None
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _check_csrf(request: Request, expected: str) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent or not tokens_equal(sent, expected):
        raise Forbidden("missing or wrong CSRF token (send the X-CSRF-Token header)")


def get_principal(request: Request, session: SessionDep) -> Principal:
    """Return the caller, from a bearer API key or the console session cookie."""
    return _authenticate(request, session)


def _authenticate(request: Request, session: Session) -> Principal:
    ip = request.client.host if request.client else None
    key = _bearer(request)
    if key is not None:
        principal = credentials.authenticate_api_key(session=session, key=key)
    else:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise Unauthenticated("sign in, or send an API key as 'Authorization: Bearer KEY'")
        info = credentials.resume_session(session=session, token=token)
        if request.method in _UNSAFE_METHODS:
            _check_csrf(request, info.csrf_token)
        principal = info.principal
    set_actor(session, Actor(kind="user", id=principal.user_id, name=principal.username, ip=ip))
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def get_streaming_reader(request: Request, state: StateDep) -> Principal:
    """Authenticate in a short transaction of its own, for long-lived streams.

    A stream must not keep the request's session (and, on SQLite, its write lock) open
    for as long as the client listens.
    """
    with transaction(state.session_factory) as session:
        principal = _authenticate(request, session)
    if principal.organisation_id is None and not principal.is_site_admin:
        raise NotFound("no organisation selected; choose one first")
    if not principal.has_role(Role.READ_ONLY):
        raise Forbidden("this needs the read-only role in the organisation")
    return principal


StreamingReader = Annotated[Principal, Depends(get_streaming_reader)]


def current_organisation(principal: CurrentPrincipal) -> uuid.UUID:
    """Return the caller's current organisation, or refuse."""
    if principal.organisation_id is None:
        raise NotFound("no organisation selected; choose one first")
    return principal.organisation_id


OrganisationId = Annotated[uuid.UUID, Depends(current_organisation)]


def require_role(role: Role) -> Callable[[Principal], Principal]:
    """Return a dependency that refuses callers below `role` in the current organisation."""

    def check(principal: CurrentPrincipal) -> Principal:
        if principal.organisation_id is None and not principal.is_site_admin:
            raise NotFound("no organisation selected; choose one first")
        if not principal.has_role(role):
            raise Forbidden(f"this needs the {role} role in the organisation")
        return principal

    return check


def require_site_admin(principal: CurrentPrincipal) -> Principal:
    """Refuse callers who are not site admins."""
    if not principal.is_site_admin:
        raise Forbidden("only a site admin may do this")
    return principal


Reader = Annotated[Principal, Depends(require_role(Role.READ_ONLY))]
Analyst = Annotated[Principal, Depends(require_role(Role.ANALYST))]
OrgAdmin = Annotated[Principal, Depends(require_role(Role.ADMIN))]
SiteAdmin = Annotated[Principal, Depends(require_site_admin)]
