"""`puffin hunt` and `puffin logtest` as Typer commands: their options and help.

The work is in `puffin.cli.hunting`; a plain `puffin hunt` command line is parsed there
without Typer (see that module), with the options declared here.
"""

from __future__ import annotations

from pathlib import Path

import typer

from puffin.cli import hunting

RulesOption = typer.Option(
    [], "--rules", "-r", help="A rule file or folder; repeatable. Default: built-in pack."
)
PlaceholdersOption = typer.Option(
    None,
    "--placeholders",
    help="Values of %name% placeholders for `expand`: a YAML mapping of names to lists, "
    "or a TOML file (a puffin.toml's [detection.placeholders]).",
)


def hunt(
    # Plain text, made paths by find_sources: Typer builds a validator for every Path it
    # parses, a quarter of a second for the thousands of files a shell glob can give.
    paths: list[str] = typer.Argument(..., help="Files or folders (.evtx, JSON lines, logs)."),
    rules: list[Path] = RulesOption,
    jsonl: Path | None = typer.Option(None, "--jsonl", help="Write every match to this file."),
    jobs: int = typer.Option(
        0,
        "--jobs",
        "-j",
        help="Worker processes (default: all cores; small inputs are read in one process).",
    ),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not use the compile cache."),
    placeholders: Path | None = PlaceholdersOption,
) -> None:
    """Run Sigma rules over files offline and summarise the matches by rule and level."""
    hunting.hunt(
        hunting.HuntOptions(tuple(paths), tuple(rules), jsonl, jobs, no_cache, placeholders)
    )


def logtest(
    rules: list[Path] = RulesOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per event."),
    placeholders: Path | None = PlaceholdersOption,
) -> None:
    """Read log lines or JSON events on standard input; show decoding and matching rules."""
    hunting.logtest(rules, as_json, placeholders)
