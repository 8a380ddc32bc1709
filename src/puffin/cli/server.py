"""`puffin server`: run the server over HTTPS and show how it is set up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.table import Table

from puffin import __version__
from puffin.cli.common import ConfigOption, DataDirOption, console, fail, load
from puffin.core.settings import Settings
from puffin.core.tls import ensure_certificate, fingerprint_of_file

if TYPE_CHECKING:
    from fastapi import FastAPI

app = typer.Typer(no_args_is_help=True)

GRACEFUL_SHUTDOWN_SECONDS = 10


def _mask(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def serve(settings: Settings, *, app: FastAPI | None = None, name: str = "Puffin") -> None:
    """Start uvicorn with the app for these settings (blocks until stopped).

    `app` is the server's application unless another one (the MISP fixer alone) is given.
    """
    import uvicorn

    ssl: dict[str, str] = {}
    scheme = "http"
    if settings.tls:
        paths = ensure_certificate(settings.data_dir, settings.tls_cert_file, settings.tls_key_file)
        ssl = {"ssl_certfile": str(paths.cert_file), "ssl_keyfile": str(paths.key_file)}
        scheme = "https"
        console.print(
            f"TLS certificate SHA-256: [bold]{fingerprint_of_file(paths.cert_file)}[/]",
            soft_wrap=True,
        )
    else:
        console.print("[yellow]TLS is off: serve this only behind a TLS-terminating proxy.[/]")
    if app is None:
        from puffin.app import create_app

        if settings.detection.process is None:  # unset: detection gets a core of its own
            detection = settings.detection.model_copy(update={"process": True})
            settings = settings.model_copy(update={"detection": detection})

        app = create_app(settings, announce=_announce)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
    console.print(f"{name} {__version__} on [bold]{scheme}://{host}:{settings.port}/[/]")
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        proxy_headers=not settings.tls,
        server_header=False,
        # Agents keep one connection and send every few seconds; closing idle
        # connections after uvicorn's default 5 s would cost a TLS handshake per batch.
        timeout_keep_alive=75,
        # On SIGTERM, requests still running after this are cancelled: under a load the
        # server cannot keep up with, the queue behind them would hold the stop for a
        # minute. An agent whose batch was cut off sends it again (the sequence number
        # makes the repeat a duplicate), so nothing is lost.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **ssl,  # type: ignore[arg-type]
    )


def _announce(message: str) -> None:
    console.print(f"[bold green]{message}[/]", highlight=False, soft_wrap=True)


@app.command("run")
def run(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Run the server (HTTPS with a generated certificate unless configured otherwise)."""
    serve(load(config, data_dir))


@app.command("info")
def info(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Show version, data directory, database, TLS mode and certificate fingerprint."""
    from puffin.migrations.runner import current_revision

    settings = load(config, data_dir)
    table = Table(show_header=False, box=None)
    table.add_column("setting", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")  # never cut a fingerprint or path
    table.add_row("version", __version__)
    table.add_row("data directory", str(settings.data_dir.resolve()))
    table.add_row("database", _mask(settings.resolved_database_url))
    table.add_row("event store", _mask(settings.resolved_events_database_url))
    try:
        revision = (
            current_revision(settings.resolved_database_url) or "empty (run `puffin db upgrade`)"
        )
    except Exception as error:
        revision = f"unreadable: {type(error).__name__}"
    table.add_row("schema revision", revision)
    table.add_row("listen", f"{settings.host}:{settings.port}")
    if settings.tls:
        cert = settings.tls_cert_file or settings.data_dir / "tls" / "server.crt"
        table.add_row(
            "TLS", "on (operator certificate)" if settings.tls_cert_file else "on (generated)"
        )
        table.add_row("certificate", str(cert))
        if cert.exists():
            table.add_row("SHA-256 fingerprint", fingerprint_of_file(cert))
        else:
            table.add_row("SHA-256 fingerprint", "not generated yet (created on first start)")
    else:
        table.add_row("TLS", "off (plain HTTP behind a proxy)")
    console.print(table)


@app.command("cert")
def cert(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Generate the self-signed certificate now (if none exists) and print its fingerprint."""
    settings = load(config, data_dir)
    if not settings.tls:
        fail("TLS is off in the settings; no certificate is needed", 2)
    paths = ensure_certificate(settings.data_dir, settings.tls_cert_file, settings.tls_key_file)
    console.print(f"{paths.cert_file}\nSHA-256: {fingerprint_of_file(paths.cert_file)}")
