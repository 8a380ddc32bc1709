"""The `puffin` command: one module per command group, imported only when used.

Server-side groups import the web and database stack, which an agent-only install does
not have, so each group is registered by name and imported lazily.
"""

from __future__ import annotations

import importlib
import sys

import typer

from puffin import __version__

# name -> (module, help). Each module exposes `app: typer.Typer`.
COMMAND_GROUPS: dict[str, tuple[str, str]] = {
    "server": ("puffin.cli.server", "Run and inspect the server."),
    "db": ("puffin.cli.db", "Create and migrate the database."),
    "user": ("puffin.cli.user", "Manage users."),
    "org": ("puffin.cli.org", "Manage organisations."),
    "apikey": ("puffin.cli.apikey", "Manage API keys."),
}

# name -> (module, attribute, help) for single commands (functions taking Typer arguments).
SINGLE_COMMANDS: dict[str, tuple[str, str, str]] = {}


def _version() -> None:
    """Print Puffin's version."""
    typer.echo(f"puffin {__version__}")


def build_app(argv: list[str] | None = None) -> typer.Typer:
    """Build the root command, importing only the group that will run."""
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
        if wanted is None or wanted == name:
            module = importlib.import_module(module_name)
            root.add_typer(module.app, name=name, help=help_text)
        else:
            root.add_typer(typer.Typer(), name=name, help=help_text)
    for name, (module_name, attribute, help_text) in SINGLE_COMMANDS.items():
        if wanted is None or wanted == name:
            function = getattr(importlib.import_module(module_name), attribute)
            root.command(name, help=help_text)(function)
        else:
            root.command(name, help=help_text)(_version)
    return root


def _wanted_name(argv: list[str]) -> str | None:
    """Return the command the user asked for, or None when listing help."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return None


def main() -> None:
    """Entry point of the `puffin` script."""
    build_app()()


if __name__ == "__main__":
    main()
