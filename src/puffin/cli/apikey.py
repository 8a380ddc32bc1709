"""`puffin apikey`: create, list and revoke API keys."""

from __future__ import annotations

import uuid

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
from puffin.cli.user import _user_id

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    user: str = typer.Option(..., "--user", help="Username who owns the key."),
    org: OrgOption = "default",
    name: str = typer.Option(..., "--name", help="What the key is for."),
    days: int | None = typer.Option(None, "--days", min=1, max=3650, help="Expire after N days."),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    from puffin.auth import credentials
    from puffin.auth import service as auth_service
    from puffin.auth.schemas import ApiKeyCreate, Principal

    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        user_id = _user_id(session, organisation_id, user)
        role = auth_service.role_in(
            session=session, user_id=user_id, organisation_id=organisation_id
        )
        principal = Principal(
            user_id=user_id,
            username=user,
            is_site_admin=False,
            organisation_id=organisation_id,
            role=role,
            via="cli",
        )
        created = credentials.create_api_key(
            session=session,
            principal=principal,
            key_in=ApiKeyCreate(name=name, expires_in_days=days),
        )
    console.print(f"API key {created.name} for {user} in {org}; shown once:")
    console.print(created.key, highlight=False)


@app.command("list")
def list_keys(
    org: OrgOption = "default", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """List an organisation's API keys (never the keys themselves)."""
    from puffin.auth import credentials
    from puffin.core.pagination import MAX_PAGE_SIZE, PageParams

    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        page = credentials.list_api_keys(
            session=session,
            organisation_id=organisation_id,
            user_id=None,
            page=PageParams(limit=MAX_PAGE_SIZE),
        )
    table = Table("id", "name", "prefix", "created", "expires", "revoked")
    for key in page.items:
        table.add_row(
            str(key.id),
            key.name,
            key.prefix + "…",
            str(key.created_at),
            str(key.expires_at or "never"),
            str(key.revoked_at or ""),
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id from `puffin apikey list`."),
    org: OrgOption = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an API key."""
    from puffin.auth import credentials

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        fail(f"{key_id!r} is not a key id", 2)
    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        key = credentials.revoke_api_key(
            session=session,
            organisation_id=organisation_id,
            key_id=parsed,
            owner_id=None,
        )
    console.print(f"revoked {key.name} ({key.prefix}…)")
