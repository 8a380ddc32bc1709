"""`puffin demo`: a local server on the embedded database with a local agent."""

from __future__ import annotations

import atexit
import glob
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from puffin.cli.common import cli_session, console, load, organisation_id_of, state_for

if TYPE_CHECKING:
    from puffin.core.settings import Settings


def demo(
    data_dir: Path = typer.Option(
        Path("./var"), "--data-dir", help="Where the demo keeps its data."
    ),
    port: int = typer.Option(8443, "--port", min=1, max=65535),
    syslog_port: int = typer.Option(
        5514, "--syslog-port", min=0, max=65535, help="0 turns it off."
    ),
    agent: bool = typer.Option(True, "--agent/--no-agent", help="Run a local agent too."),
) -> None:
    """Start an HTTPS server on 127.0.0.1 with syslog on UDP and a local agent."""
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
    if agent:
        _start_local_agent(settings, data_dir, port)
    serve(settings)


def _demo_token(settings: object, data_dir: Path) -> str:
    from puffin.endpoint import service as endpoint_service
    from puffin.endpoint.schemas import EnrollmentTokenCreate

    state = state_for(settings)  # type: ignore[arg-type]
    with cli_session(state) as session:
        created = endpoint_service.create_enrollment_token(
            session=session,
            organisation_id=organisation_id_of(session, "default"),
            token_in=EnrollmentTokenCreate(name="demo agent", max_uses=1, expires_in_hours=1),
            server_fingerprint=None,
        )
    state.engine.dispose()
    return created.token


def _start_local_agent(settings: Settings, data_dir: Path, port: int) -> None:
    """Enrol and run an agent on this machine once the server answers."""
    state_dir = (data_dir / "agent").resolve()
    token = None if (state_dir / "enrolment.json").exists() else _demo_token(settings, data_dir)
    demo_log = (data_dir / "demo-app.log").resolve()
    logs = [str(demo_log)] + [p for p in ("/var/log/auth.log", "/var/log/syslog") if glob.glob(p)]
    console.print(f"local agent: state in {state_dir}, following {', '.join(logs)}")

    def launch() -> None:
        _wait_for_port(port)
        if token is not None:
            # The agent pins the server's certificate; the demo server is this machine's,
            # so its fingerprint is read from the certificate file it serves.
            fingerprint = _served_fingerprint(settings)
            subprocess.run(  # noqa: S603 - our own interpreter and module, no shell
                [
                    sys.executable,
                    "-m",
                    "puffin.agent",
                    "enroll",
                    "--server",
                    f"https://127.0.0.1:{port}",
                    "--token",
                    token,
                    "--name",
                    f"{socket.gethostname()}-demo",
                    "--fingerprint",
                    fingerprint,
                    "--state-dir",
                    str(state_dir),
                ],
                check=False,
            )
        demo_log.touch()
        command = [sys.executable, "-m", "puffin.agent", "run", "--state-dir", str(state_dir)]
        for log in logs:
            command += ["--log", log]
        process = subprocess.Popen(command)  # noqa: S603 - no shell, fixed arguments
        atexit.register(process.terminate)

    threading.Thread(target=launch, name="demo-agent", daemon=True).start()


def _served_fingerprint(settings: Settings) -> str:
    """Return the SHA-256 fingerprint of the certificate the demo server presents."""
    from puffin.core.tls import ensure_certificate, fingerprint_of_file

    paths = ensure_certificate(settings.data_dir, settings.tls_cert_file, settings.tls_key_file)
    return fingerprint_of_file(paths.cert_file)


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
