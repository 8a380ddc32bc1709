"""`puffin org`: create and list organisations."""

from __future__ import annotations

import typer
from rich.table import Table

from puffin.cli.common import (
    ConfigOption,
    DataDirOption,
    cli_session,
    console,
    fail,
    load,
    state_for,
)

app = typer.Typer(no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Display name, e.g. 'Acme Corp'."),
    slug: str = typer.Option(..., help="Short lower-case id, e.g. 'acme'."),
    description: str = typer.Option("", help="Free text."),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an organisation."""
    from pydantic import ValidationError

    from puffin.auth import service as auth_service
    from puffin.auth.schemas import OrganisationCreate

    try:
        org_in = OrganisationCreate(name=name, slug=slug, description=description)
    except ValidationError as error:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors()), 2)
    state = state_for(load(config, data_dir))
    with cli_session(state) as session:
        org = auth_service.create_organisation(session=session, org_in=org_in)
    console.print(f"created organisation {org.name} ({org.slug}) id {org.id}")


@app.command("list")
def list_organisations(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """List organisations."""
    from sqlalchemy import select

    from puffin.auth.models import Organisation

    state = state_for(load(config, data_dir))
    table = Table("slug", "name", "active", "id")
    with cli_session(state) as session:
        for org in session.scalars(select(Organisation).order_by(Organisation.name)):
            table.add_row(org.slug, org.name, "yes" if org.is_active else "no", str(org.id))
    console.print(table)
