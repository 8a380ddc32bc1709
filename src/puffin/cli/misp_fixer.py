"""`puffin misp-fixer`: serve the fixer alone, fix one event from the command line, issue tokens."""

from __future__ import annotations

import json
import os
from collections import Counter
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from puffin.cli.common import ConfigOption, DataDirOption, console, errors, fail, load
from puffin.core.clock import utcnow

if TYPE_CHECKING:
    from puffin.intel.misp_fixer.fixer import RunReport
    from puffin.intel.misp_fixer.settings import FixerSettings

app = typer.Typer(no_args_is_help=True)

_LISTED_CHANGES = 40
_NOT_CONFIGURED = (
    "set misp_fixer.misp_url and misp_fixer.misp_key "
    "(puffin.toml [misp_fixer], or PUFFIN_MISP_FIXER__MISP_URL and PUFFIN_MISP_FIXER__MISP_KEY)"
)


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
    from puffin.intel.misp_fixer.fixer import FixerSetupError, build_fixer
    from puffin.intel.misp_fixer.misp import EventNotFound, MispError

    settings, directory = _settings(config, data_dir)
    if not settings.misp_url or settings.misp_key is None:
        fail(_NOT_CONFIGURED)
    loading = nullcontext() if as_json else console.status("Loading warninglists…")
    with loading:
        try:
            fixer = build_fixer(settings, data_dir=directory)
        except FixerSetupError as error:
            fail(error.detail, 2)
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


@app.command("serve")
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default: settings' host).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", min=1, max=65535, help="Port (default: settings' port)."),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="The operator's certificate (PEM).")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="The certificate's private key (PEM).")
    ] = None,
    plain_http: Annotated[
        bool,
        typer.Option("--plain-http", help="Serve HTTP, not HTTPS: only behind a TLS proxy."),
    ] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run only the fixer: the webhook, /docs, /redoc and /healthz, over HTTPS by default."""
    from puffin.api.misp_webhook import WEBHOOK_PATH
    from puffin.cli.server import serve as serve_app
    from puffin.intel.misp_fixer.fixer import FixerSetupError, check_setup
    from puffin.misp_fixer_app import create_misp_fixer_app

    if plain_http and (tls_cert is not None or tls_key is not None):
        fail("--plain-http serves no certificate; drop --tls-cert/--tls-key or --plain-http", 2)
    for option, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key)):
        if path is not None and not path.is_file():
            fail(f"{option} {path} does not exist", 2)
    wanted = {"host": host, "port": port, "tls_cert_file": tls_cert, "tls_key_file": tls_key}
    overrides: dict[str, Any] = {name: value for name, value in wanted.items() if value is not None}
    if plain_http:
        overrides["tls"] = False
    settings = load(config, data_dir, **overrides)
    fixer_settings = _validated(settings.misp_fixer)
    if not fixer_settings.misp_url or fixer_settings.misp_key is None:
        fail(_NOT_CONFIGURED, 2)
    try:
        check_setup(fixer_settings, data_dir=settings.data_dir)
    except FixerSetupError as error:
        fail(error.detail, 2)
    fixer_app = create_misp_fixer_app(settings, fixer_settings)
    console.print(
        f"Webhook: POST {WEBHOOK_PATH} · Swagger UI /docs · ReDoc /redoc · "
        f"runs recorded in organisation {fixer_settings.organisation!r}",
        soft_wrap=True,
        highlight=False,
    )
    serve_app(settings, app=fixer_app, name="Puffin MISP event fixer")


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


def _validated(section: dict[str, Any]) -> FixerSettings:
    """Return the [misp_fixer] section validated, or exit with each problem."""
    from puffin.intel.misp_fixer.settings import FixerSettings

    try:
        return FixerSettings.model_validate(section)
    except ValidationError as error:
        fail(f"invalid [misp_fixer] settings: {_problems(error)}", 2)


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in e['loc']) or 'misp_fixer'}: {e['msg']}"
        for e in error.errors()
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
        fail(f"invalid settings: {_problems(error)}", 2)
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
