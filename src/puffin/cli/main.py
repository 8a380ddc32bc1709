"""The `puffin` command: one module per command group, imported only when used.

Server-side groups import the web and database stack, which an agent-only install does
not have, so each group is registered by name and imported lazily. A plain `puffin hunt`
command line runs without loading Typer at all (see `puffin.cli.hunting`).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from puffin import __version__

if TYPE_CHECKING:
    import typer

# name -> (module, help). Each module exposes `app: typer.Typer`.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "server": ("puffin.cli.server", "Run and inspect the server."),
    "db": ("puffin.cli.db", "Create and migrate the database."),
    "user": ("puffin.cli.user", "Manage users."),
    "org": ("puffin.cli.org", "Manage organisations."),
    "apikey": ("puffin.cli.apikey", "Manage API keys."),
    "agent": ("puffin.cli.agent", "Enrol and run the endpoint agent."),
    "agent-token": ("puffin.cli.agent_token", "Create, list and revoke agent enrolment tokens."),
    "rules": ("puffin.cli.rules", "Import, list, lint and test Sigma rule packs."),
    "misp-fixer": ("puffin.cli.misp_fixer", "Fix MISP events before they are published."),
}

# name -> (module, attribute, help) for single commands (functions taking Typer arguments).
SINGLE_COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("puffin.cli.demo", "demo", "Run a local demo server (HTTPS, embedded database)."),
    "hunt": ("puffin.cli.hunt", "hunt", "Run Sigma rules over EVTX, JSON and log files offline."),
    "logtest": ("puffin.cli.hunt", "logtest", "Show how log lines decode and which rules match."),
}

_NEEDS_SERVER = "needs the server parts: pip install 'puffin-mdr[server]'"


def _version() -> None:
    """Print Puffin's version."""
    import typer

    typer.echo(f"puffin {__version__}")


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """Build the root command, importing only the group that will run."""
    import typer

    root = typer.Typer(
        name="puffin",
        help="Puffin: managed detection and response in one package.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    root.command("version")(_version)
    wanted = _wanted_name(argv if argv is not None else sys.argv[1:])
    for name, (module_name, help_text) in COMMAND_GROUPS.items():
        module = _import(module_name) if wanted in (None, name) else None
        if module is not None:
            root.add_typer(module.app, name=name, help=help_text)
        else:
            root.command(name, help=help_text if wanted != name else _NEEDS_SERVER)(_unavailable)
    for name, (module_name, attribute, help_text) in SINGLE_COMMANDS.items():
        module = _import(module_name) if wanted in (None, name) else None
        if module is not None:
            root.command(name, help=help_text)(getattr(module, attribute))
        else:
            root.command(name, help=help_text if wanted != name else _NEEDS_SERVER)(_unavailable)
    return root


def _import(module_name: str) -> ModuleType | None:
    """Import a command module, or return None when its extra is not installed."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        return None


def _unavailable() -> None:
    """Explain that this command's parts are not installed."""
    import typer

    typer.echo(f"error: this command {_NEEDS_SERVER}", err=True)
    raise typer.Exit(2)


def _wanted_name(argv: list[str]) -> str | None:
    """Return the command the user asked for, or None when listing help."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    """Entry point of the `puffin` script."""
    if sys.argv[1:2] == ["hunt"]:
        from puffin.cli import hunting

        options = hunting.parse_hunt_argv(sys.argv[2:])
        if options is not None:  # else help or a mistake: Typer explains
            hunting.hunt(options)
            return
    build_app()()


if __name__ == "__main__":
    main()
