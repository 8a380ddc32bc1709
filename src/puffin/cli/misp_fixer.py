"""`puffin misp-fixer`: fix one MISP event from the command line, issue webhook tokens."""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from puffin.cli.common import ConfigOption, DataDirOption, console, errors, fail
from puffin.core.clock import utcnow

if TYPE_CHECKING:
    from puffin.intel.misp_fixer.fixer import RunReport
    from puffin.intel.misp_fixer.settings import FixerSettings

app = typer.Typer(no_args_is_help=True)

_LISTED_CHANGES = 40


@app.command("run")
def run(
    event: Annotated[str, typer.Option("--event", "-e", help="Event id or UUID.")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the plan; change nothing in MISP.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Fix one event as the webhook would (or only plan it), and print what happened."""
    from puffin.intel.misp_fixer.fixer import build_fixer
    from puffin.intel.misp_fixer.misp import EventNotFound, MispError

    settings, directory = _settings(config, data_dir)
    if not settings.misp_url or settings.misp_key is None:
        fail(
            "set misp_fixer.misp_url and misp_fixer.misp_key (puffin.toml or PUFFIN_MISP_FIXER__*)"
        )
    loading = nullcontext() if as_json else console.status("Loading warninglists…")
    with loading:
        fixer = build_fixer(settings, data_dir=directory)
    try:
        report = fixer.run(event_id=event, dry_run=dry_run)
    except (EventNotFound, MispError) as error:
        fail(error.detail)
    finally:
        fixer.close()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_report(report)
    if report.partial:
        raise typer.Exit(1)


@app.command("token")
def token(
    days: Annotated[
        int, typer.Option("--days", min=1, max=3650, help="Days until the token expires.")
    ] = 365,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print a signed token for MISP's workflow webhook (Authorization: Bearer …)."""
    from puffin.intel.misp_fixer import tokens

    settings, directory = _settings(config, data_dir)
    secret = tokens.jwt_secret(settings, directory)
    issued = utcnow()
    typer.echo(tokens.issue(secret=secret, days=days, now=issued))
    expiry = (issued + timedelta(days=days)).strftime("%Y-%m-%d %H:%M UTC")
    errors.print(
        f"Valid until {expiry}. In MISP's workflow, send it as the header "
        "[bold]Authorization: Bearer <token>[/]."
    )


def _settings(config: Path | None, data_dir: Path | None) -> tuple[FixerSettings, Path]:
    """Read the fixer's settings (puffin.toml's [misp_fixer] and PUFFIN_MISP_FIXER__*)."""
    from puffin.intel.misp_fixer.settings import StandaloneSettings

    if config is not None and not config.is_file():
        fail(f"settings file {config} does not exist", 2)
    previous = os.environ.get("PUFFIN_CONFIG")
    try:
        if config is not None:
            os.environ["PUFFIN_CONFIG"] = str(config)
        loaded = (
            StandaloneSettings(data_dir=data_dir) if data_dir is not None else StandaloneSettings()
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        fail(f"invalid settings: {problems}", 2)
    finally:
        if config is not None:
            _restore("PUFFIN_CONFIG", previous)
    return loaded.misp_fixer, loaded.data_dir


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _print_report(report: RunReport) -> None:
    """Print a run: the event, the verdicts, the changes and anything that went wrong."""
    console.print(
        f"Event [bold]{report.event_id}[/] {report.event_uuid} — {report.event_info}",
        soft_wrap=True,
    )
    if report.skipped_reason:
        console.print(f"[yellow]Skipped:[/] {report.skipped_reason}")
        return
    console.print(
        f"{report.attributes} attributes, {len(report.decisions)} false positives, "
        f"{report.lookups} remote lookups"
    )
    if report.decisions:
        console.print(_decisions_table(report))
    _print_changes(report)
    for error in report.errors:
        errors.print(f"[bold red]error:[/] {error}", soft_wrap=True)
    if report.not_looked_up:
        console.print(
            f"[yellow]{report.not_looked_up} values were not looked up remotely[/] "
            "(max_attributes); run again to look up the rest."
        )
    console.print(
        f"[bold]{report.outcome}[/] in {report.duration_seconds:.2f} s, "
        f"{report.misp_write_calls} MISP write calls"
    )


def _decisions_table(report: RunReport) -> Table:
    table = Table(title="False positives")
    for column in ("attribute", "type", "value", "source", "detail", "action"):
        table.add_column(column, overflow="fold")
    for decision in report.decisions[:_LISTED_CHANGES]:
        table.add_row(
            decision.attribute_uuid[:8],
            decision.type,
            decision.value,
            decision.source,
            decision.detail,
            decision.action,
        )
    if len(report.decisions) > _LISTED_CHANGES:
        table.caption = f"… and {len(report.decisions) - _LISTED_CHANGES} more (--json lists all)"
    return table


def _print_changes(report: RunReport) -> None:
    changes = report.planned if report.dry_run else report.applied
    verb = "planned" if report.dry_run else "applied"
    if not changes:
        console.print("Nothing to change." if not report.planned else f"Nothing {verb}.")
        return
    table = Table(title=f"Changes {verb}")
    table.add_column("change")
    table.add_column("count", justify="right")
    for kind, count in sorted(Counter(_label(c.kind, c.new_value) for c in changes).items()):
        table.add_row(kind, str(count))
    console.print(table)


def _label(kind: str, new_value: str) -> str:
    return f"{kind} → {new_value}"
