"""Members of the current organisation: create, change role, deactivate, reset password, remove."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from puffin.auth import service as auth_service
from puffin.auth.dependencies import SessionDep
from puffin.auth.schemas import (
    MembershipSet,
    PasswordChange,
    Role,
    UserCreate,
    UserRead,
    UserUpdate,
)
from puffin.core.crypto import random_password
from puffin.core.errors import Forbidden, PuffinError
from puffin.core.pagination import PageParams
from puffin.web.deps import AdminConsole, FormDep, console_router, organisation_of
from puffin.web.forms import discard_changes, field_errors, parse_form
from puffin.web.render import Console, render
from puffin.web.security import app_state, set_flash

router = console_router("/admin/users")

ROLE_OPTIONS = [
    (Role.ADMIN.value, "admin — manages members, keys and settings"),
    (Role.ANALYST.value, "analyst — works alerts and cases"),
    (Role.READ_ONLY.value, "read-only — sees, changes nothing"),
]


def _back(request: Request, path: str, message: str, kind: str = "success") -> Response:
    response = RedirectResponse(path, status_code=303)
    set_flash(response, app_state(request), message, kind)
    return response


def _list_page(
    request: Request, console: Console, session: SessionDep, offset: int = 0, **context: Any
) -> HTMLResponse:
    users = auth_service.list_users(
        session=session, organisation_id=organisation_of(console), page=PageParams(offset=offset)
    )
    status_code = context.pop("status_code", 200)
    context.setdefault("values", {"role": Role.ANALYST.value})
    context.setdefault("add_errors", {})
    context.setdefault("add_error", None)
    return render(
        request,
        "admin/users.html",
        {"page": users, "role_options": ROLE_OPTIONS, **context},
        console=console,
        section="admin",
        status_code=status_code,
    )


@router.get("", response_class=HTMLResponse)
def list_users(
    request: Request, console: AdminConsole, session: SessionDep, offset: int = 0
) -> HTMLResponse:
    """List the members of the current organisation with their roles."""
    return _list_page(request, console, session, max(offset, 0))


@router.post("", response_class=HTMLResponse)
def create_user(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Create a user with a role in the current organisation."""
    user_in, errors = parse_form(UserCreate, form)
    values = {k: v for k, v in form.items() if k != "password"}
    if user_in is None:
        return _list_page(request, console, session, errors=errors, values=values, status_code=422)
    try:
        created = auth_service.create_user(
            session=session, organisation_id=organisation_of(console), user_in=user_in
        )
    except PuffinError as error:
        discard_changes(session)
        return _list_page(
            request,
            console,
            session,
            form_error=error.detail,
            values=values,
            status_code=error.status_code,
        )
    return _back(
        request, f"/admin/users/{created.id}", f"Created {created.username} as {created.role}."
    )


@router.post("/add-existing", response_class=HTMLResponse)
def add_existing_user(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Give an existing user a role here (site admins)."""
    if not console.principal.is_site_admin:
        raise Forbidden("only a site admin may add members of other organisations")
    membership, errors = parse_form(MembershipSet, form)
    username = form.get("username", "").strip()
    if not username:
        errors["username"] = "This field is required."
    if membership is None or errors:
        return _list_page(request, console, session, add_errors=errors, status_code=422)
    try:
        added = auth_service.add_member(
            session=session,
            organisation_id=organisation_of(console),
            username=username,
            role=membership.role,
        )
    except PuffinError as error:
        discard_changes(session)
        return _list_page(
            request, console, session, add_error=error.detail, status_code=error.status_code
        )
    return _back(request, "/admin/users", f"Added {added.username} as {added.role}.")


def _detail_page(
    request: Request, console: Console, user: UserRead, **context: Any
) -> HTMLResponse:
    status_code = context.pop("status_code", 200)
    return render(
        request,
        "admin/user_detail.html",
        {"user": user, "role_options": ROLE_OPTIONS, "new_password": None, **context},
        console=console,
        section="admin",
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


def _member(console: Console, session: SessionDep, user_id: uuid.UUID) -> UserRead:
    return auth_service.get_user(
        session=session, organisation_id=organisation_of(console), user_id=user_id
    )


@router.get("/{user_id}", response_class=HTMLResponse)
def user_detail(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> HTMLResponse:
    """Show a member with the forms that change them."""
    return _detail_page(request, console, _member(console, session, user_id))


def _failed(
    request: Request, console: Console, session: SessionDep, user_id: uuid.UUID, error: PuffinError
) -> HTMLResponse:
    discard_changes(session)
    user = _member(console, session, user_id)
    return _detail_page(
        request, console, user, form_error=error.detail, status_code=error.status_code
    )


@router.post("/{user_id}", response_class=HTMLResponse)
def update_profile(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Change a member's display name and e-mail address."""
    user = _member(console, session, user_id)
    email = form.get("email", "").strip()
    fields = {"display_name": form.get("display_name", ""), "email": email or None}
    try:
        user_in = UserUpdate.model_validate(fields)
    except ValidationError as error:
        return _detail_page(request, console, user, errors=field_errors(error), status_code=422)
    try:
        auth_service.update_user(
            session=session,
            organisation_id=organisation_of(console),
            user_id=user_id,
            user_in=user_in,
        )
    except PuffinError as error:
        return _failed(request, console, session, user_id, error)
    return _back(request, f"/admin/users/{user_id}", f"Saved {user.username}'s profile.")


@router.post("/{user_id}/role", response_class=HTMLResponse)
def change_role(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Change a member's role in the current organisation."""
    user = _member(console, session, user_id)
    membership, errors = parse_form(MembershipSet, form)
    if membership is None:
        return _detail_page(request, console, user, errors=errors, status_code=422)
    try:
        changed = auth_service.set_role(
            session=session,
            organisation_id=organisation_of(console),
            user_id=user_id,
            role=membership.role,
        )
    except PuffinError as error:
        return _failed(request, console, session, user_id, error)
    return _back(request, f"/admin/users/{user_id}", f"{changed.username} is now {changed.role}.")


@router.post("/{user_id}/active", response_class=HTMLResponse)
def set_active(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Deactivate or reactivate a member's account."""
    active = form.get("active") == "true"
    if not active and user_id == console.principal.user_id:
        raise Forbidden("you cannot deactivate your own account")
    try:
        changed = auth_service.update_user(
            session=session,
            organisation_id=organisation_of(console),
            user_id=user_id,
            user_in=UserUpdate(is_active=active),
        )
    except PuffinError as error:
        return _failed(request, console, session, user_id, error)
    verb = "reactivated" if active else "deactivated"
    return _back(request, f"/admin/users/{user_id}", f"{changed.username} is {verb}.")


@router.post("/{user_id}/password", response_class=HTMLResponse)
def reset_password(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep, form: FormDep
) -> Response:
    """Set a member's password: the one typed, or a generated one shown once."""
    user = _member(console, session, user_id)
    typed = form.get("password", "")
    change, errors = parse_form(PasswordChange, {"password": typed or random_password()})
    if change is None:
        return _detail_page(request, console, user, errors=errors, status_code=422)
    try:
        auth_service.set_password(
            session=session,
            organisation_id=organisation_of(console),
            user_id=user_id,
            password=change.password,
        )
    except PuffinError as error:
        return _failed(request, console, session, user_id, error)
    if typed:
        return _back(request, f"/admin/users/{user_id}", f"Set a new password for {user.username}.")
    return _detail_page(request, console, user, new_password=change.password)


@router.post("/{user_id}/remove", response_class=HTMLResponse)
def remove_member(
    request: Request, user_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> Response:
    """Take a member out of the current organisation."""
    user = _member(console, session, user_id)
    try:
        auth_service.remove_member(
            session=session, organisation_id=organisation_of(console), user_id=user_id
        )
    except PuffinError as error:
        return _failed(request, console, session, user_id, error)
    return _back(
        request, "/admin/users", f"Removed {user.username} from {console.organisation_name}."
    )
