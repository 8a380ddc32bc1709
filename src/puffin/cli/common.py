"""What every server-side command shares: settings, the app state, and error reporting."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from sqlalchemy.orm import Session

from puffin.core.changes import Actor, set_actor
from puffin.core.db import transaction
from puffin.core.errors import PuffinError
from puffin.core.settings import Settings, config_file_path
from puffin.core.state import AppState

# No emoji codes: a fingerprint such as "E0:CD:CB" must never turn into a picture.
console = Console(emoji=False)
errors = Console(stderr=True, emoji=False)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings file (default: ./puffin.toml or $PUFFIN_CONFIG)."
    ),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory (default: ./var).")
]
OrgOption = Annotated[str, typer.Option("--org", help="Organisation slug.")]


def fail(message: str, code: int = 1) -> NoReturn:
    """Print an error in red and exit with the code."""
    errors.print(f"[bold red]error:[/] {escape(message)}")  # brackets are text, not markup
    raise typer.Exit(code)


def load(config: Path | None, data_dir: Path | None, **overrides: Any) -> Settings:
    """Build settings from the file, the environment and command-line options."""
    if config is not None and not config.is_file():
        fail(f"settings file {config} does not exist", 2)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    previous = os.environ.get("PUFFIN_CONFIG")
    try:
        if config is not None:
            os.environ["PUFFIN_CONFIG"] = str(config)
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}"
            for e in error.errors()
        )
        fail(f"invalid settings ({config_file_path()} and PUFFIN_* variables): {problems}", 2)
    finally:
        if config is not None:
            if previous is None:
                os.environ.pop("PUFFIN_CONFIG", None)
            else:
                os.environ["PUFFIN_CONFIG"] = previous


def state_for(settings: Settings) -> AppState:
    """Return the app state (engines, audit hook) with the database migrated.

    On a new database this also creates the first site admin and prints its password
    once, exactly as the server's first start would.
    """
    from puffin.app import build_state, prepare_database

    state = build_state(settings)
    prepare_database(state, lambda message: console.print(f"[bold green]{message}[/]"))
    return state


@contextmanager
def cli_session(state: AppState) -> Iterator[Session]:
    """Yield a session acting as the CLI; domain errors become a message and exit 1."""
    try:
        with transaction(state.session_factory) as session:
            set_actor(session, Actor.system("cli"))
            yield session
    except PuffinError as error:
        fail(error.detail)


@contextmanager
def organisation_session(settings: Settings, org: str) -> Iterator[tuple[Session, Any]]:
    """Yield a CLI session (see `cli_session`) and the id of the organisation `org`."""
    with cli_session(state_for(settings)) as session:
        yield session, organisation_id_of(session, org)


def organisation_id_of(session: Session, slug: str) -> Any:
    """Return the id of the organisation with this slug, or exit with a message."""
    from puffin.auth import service as auth_service

    organisation = auth_service.get_organisation_by_slug(session=session, slug=slug)
    if organisation is None:
        fail(f"no organisation with slug {slug!r}; `puffin org list` shows them")
    return organisation.id
