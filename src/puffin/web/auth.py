"""Signing in and out, and switching the current organisation."""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from puffin.auth import credentials
from puffin.auth.credentials import ThrottlePolicy
from puffin.auth.dependencies import SESSION_COOKIE, SessionDep
from puffin.auth.models import User
from puffin.core.changes import Actor, set_actor
from puffin.core.errors import NotFound, TooManyRequests, Unauthenticated
from puffin.web.deps import ConsoleDep, FormDep, console_router
from puffin.web.forms import discard_changes
from puffin.web.render import render
from puffin.web.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    app_state,
    clear_session_cookie,
    login_csrf_valid,
    new_login_csrf,
    safe_next,
    set_flash,
    set_login_csrf_cookie,
    set_session_cookie,
)

router = console_router()


def _login_page(
    request: Request,
    *,
    next_path: str,
    username: str = "",
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    state = app_state(request)
    nonce, token = new_login_csrf(state)
    context = {"next": next_path, "username": username, "form_error": error, "login_csrf": token}
    response = render(request, "login.html", context, status_code=status_code, headers=headers)
    set_login_csrf_cookie(response, state, nonce)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, session: SessionDep, next: str = "/") -> Response:
    """Show the sign-in form, or go on if already signed in."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        try:
            credentials.resume_session(session=session, token=token)
            return RedirectResponse(safe_next(next), status_code=303)
        except Unauthenticated:
            pass
    return _login_page(request, next_path=safe_next(next))


def _signed_in(request: Request, session: Session, user: User, next_path: str) -> Response:
    state = app_state(request)
    ip = request.client.host if request.client else None
    set_actor(session, Actor(kind="user", id=user.id, name=user.username, ip=ip))
    old_token = request.cookies.get(SESSION_COOKIE)
    if old_token:  # never reuse a session id across sign-ins
        credentials.close_session(session=session, token=old_token)
    info = credentials.open_session(
        session=session, user=user, ip=ip, max_age_seconds=state.settings.session_max_age_seconds
    )
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(response, state, info.token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/login", response_class=HTMLResponse)
def login(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Check the password, open a session and set its cookie."""
    state = app_state(request)
    next_path = safe_next(form.get("next"))
    username = form.get("username", "").strip()[:150]
    if not login_csrf_valid(state, request.cookies.get(LOGIN_CSRF_COOKIE), form.get(CSRF_FIELD)):
        message = "The sign-in form expired; please try again."
        return _login_page(
            request, next_path=next_path, username=username, error=message, status_code=403
        )
    settings = state.settings
    policy = ThrottlePolicy(
        max_failures=settings.login_max_failures, lockout_seconds=settings.login_lockout_seconds
    )
    try:
        user = credentials.verify_credentials(
            session=session, username=username, password=form.get("password", ""), policy=policy
        )
    except TooManyRequests as error:
        discard_changes(session)
        message = f"{error.detail[0].upper()}{error.detail[1:]}."
        headers = {"Retry-After": str(error.retry_after)}
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error=message,
            status_code=429,
            headers=headers,
        )
    except Unauthenticated:
        session.commit()  # the failure count must persist, whatever happens to this request
        return _login_page(
            request,
            next_path=next_path,
            username=username,
            error="Wrong username or password.",
            status_code=401,
        )
    return _signed_in(request, session, user, next_path)


@router.post("/logout")
def logout(request: Request, console: ConsoleDep, session: SessionDep) -> Response:
    """Close the session and forget its cookie."""
    credentials.close_session(session=session, token=console.session_token)
    state = app_state(request)
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookie(response, state)
    return response


@router.post("/switch-organisation")
def switch_organisation(
    request: Request, console: ConsoleDep, session: SessionDep, form: FormDep
) -> Response:
    """Make another organisation the current one and go back to the page."""
    try:
        organisation_id = uuid.UUID(form.get("organisation_id", ""))
    except ValueError as error:
        raise NotFound("choose an organisation from the list") from error
    info = credentials.switch_organisation(
        session=session, token=console.session_token, organisation_id=organisation_id
    )
    name = next((c.name for c in console.choices if c.id == organisation_id), "the organisation")
    back = safe_next(form.get("next"))
    if back.startswith("/admin/") and back.count("/") > 2:
        back = (
            "/" + back.split("/")[1] + "/" + back.split("/")[2]
        )  # object pages are per organisation
    response = RedirectResponse(back, status_code=303)
    set_flash(
        response,
        app_state(request),
        f"Now working in {name} as {info.principal.role or 'site admin'}.",
        "info",
    )
    return response
