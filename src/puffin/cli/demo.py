"""`puffin demo`: a local server on the embedded database, ready to click through."""

from __future__ import annotations

from pathlib import Path

import typer

from puffin.cli.common import console, load


def demo(
    data_dir: Path = typer.Option(
        Path("./var"), "--data-dir", help="Where the demo keeps its data."
    ),
    port: int = typer.Option(8443, "--port", min=1, max=65535),
    syslog_port: int = typer.Option(
        5514, "--syslog-port", min=0, max=65535, help="0 turns it off."
    ),
) -> None:
    """Start an HTTPS server on 127.0.0.1 with syslog on UDP; print the admin password once."""
    from puffin.cli.server import serve

    settings = load(
        None,
        data_dir,
        host="127.0.0.1",
        port=port,
        syslog_host="127.0.0.1",
        syslog_udp_port=syslog_port or None,
    )
    first_run = not (data_dir / "puffin.db").exists()
    console.rule("[bold]Puffin demo")
    console.print(f"data directory: {data_dir.resolve()}")
    if syslog_port:
        console.print(
            f"syslog: udp://127.0.0.1:{syslog_port} "
            f"(try `logger -n 127.0.0.1 -P {syslog_port} -d hello`)"
        )
    if not first_run:
        console.print(
            "The admin password was printed on the first run; forgot it? "
            f"`puffin user set-password admin --data-dir {data_dir}`"
        )
    serve(settings)
