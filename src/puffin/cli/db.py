"""`puffin db`: migrate the database and show its revision."""

from __future__ import annotations

import typer

from puffin.cli.common import ConfigOption, DataDirOption, console, fail, load

app = typer.Typer(no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    revision: str = typer.Option("head", help="Target revision."),
) -> None:
    """Migrate the database to the newest schema (or to --revision)."""
    from puffin.migrations.runner import current_revision, upgrade_database

    settings = load(config, data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        upgrade_database(settings.resolved_database_url, revision)
    except Exception as error:
        fail(f"migration failed: {type(error).__name__}: {error}")
    console.print(f"database at revision {current_revision(settings.resolved_database_url)}")


@app.command("current")
def current(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Print the database's current schema revision."""
    from puffin.migrations.runner import current_revision

    settings = load(config, data_dir)
    console.print(current_revision(settings.resolved_database_url) or "empty")
