"""`puffin user`: create users, list them, set passwords, deactivate."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from puffin.cli.common import (
    ConfigOption,
    DataDirOption,
    OrgOption,
    console,
    fail,
    load,
    organisation_session,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

app = typer.Typer(no_args_is_help=True)


def _user_id(session: Session, organisation_id: uuid.UUID, username: str) -> uuid.UUID:
    from sqlalchemy import func, select

    from puffin.auth.models import Membership, User

    user_id = session.scalar(
        select(User.id)
        .join(Membership, Membership.user_id == User.id)
        .where(func.lower(User.username) == username.lower())
        .where(Membership.organisation_id == organisation_id)
    )
    if user_id is None:
        fail(f"no user {username!r} in this organisation")
    return user_id


@app.command("create")
def create(
    username: str = typer.Argument(...),
    org: OrgOption = "default",
    role: str = typer.Option("analyst", help="admin, analyst or read-only."),
    site_admin: bool = typer.Option(False, "--site-admin", help="Also make a site admin."),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user with a generated password, printed once."""
    from pydantic import ValidationError

    from puffin.auth import service as auth_service
    from puffin.auth.models import User
    from puffin.auth.schemas import UserCreate
    from puffin.core.crypto import random_password

    password = random_password()
    try:
        user_in = UserCreate(username=username, password=password, role=role)
    except ValidationError as error:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors()), 2)
    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        created = auth_service.create_user(
            session=session, organisation_id=organisation_id, user_in=user_in
        )
        if site_admin:
            user = session.get(User, created.id)
            assert user is not None
            user.is_site_admin = True
    console.print(f"created {created.username} ({role} in {org}); password, shown once:")
    console.print(password, highlight=False)


@app.command("list")
def list_users(
    org: OrgOption = "default", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """List an organisation's users and roles."""
    from puffin.auth import service as auth_service
    from puffin.core.pagination import MAX_PAGE_SIZE, PageParams

    table = Table("username", "role", "active", "site admin", "last sign-in")
    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        page = auth_service.list_users(
            session=session,
            organisation_id=organisation_id,
            page=PageParams(limit=MAX_PAGE_SIZE),
        )
    for user in page.items:
        table.add_row(
            user.username,
            str(user.role),
            "yes" if user.is_active else "no",
            "yes" if user.is_site_admin else "",
            str(user.last_login_at or "never"),
        )
    console.print(table)


@app.command("set-password")
def set_password(
    username: str = typer.Argument(...),
    org: OrgOption = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Give a user a new generated password, printed once."""
    from puffin.auth import service as auth_service
    from puffin.core.crypto import random_password

    password = random_password()
    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        auth_service.set_password(
            session=session,
            organisation_id=organisation_id,
            user_id=_user_id(session, organisation_id, username),
            password=password,
        )
    console.print(f"new password for {username}, shown once:")
    console.print(password, highlight=False)


@app.command("deactivate")
def deactivate(
    username: str = typer.Argument(...),
    org: OrgOption = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Stop a user from signing in."""
    from puffin.auth import service as auth_service
    from puffin.auth.schemas import UserUpdate

    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        auth_service.update_user(
            session=session,
            organisation_id=organisation_id,
            user_id=_user_id(session, organisation_id, username),
            user_in=UserUpdate(is_active=False),
        )
    console.print(f"{username} can no longer sign in")
