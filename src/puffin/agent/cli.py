"""The agent's commands (`puffin agent …` and `python -m puffin.agent`): enrol, run, status,
requeue, install. `python -m puffin.agent run` skips typer (see `puffin.agent.launch`)."""

from __future__ import annotations

from pathlib import Path

import typer

from puffin.agent import launch, runner, state
from puffin.agent.launch import DEFAULT_STATE_DIR

app = typer.Typer(no_args_is_help=True)

StateDir = typer.Option(DEFAULT_STATE_DIR, "--state-dir", help=launch.HELP["state_dir"])


@app.command("enroll")
def enroll(
    server: str = typer.Option(..., help="The server, e.g. https://puffin.example:8443"),
    token: str = typer.Option(..., help="An enrolment token from the console."),
    name: str = typer.Option("", help="The agent's name (default: this host's name)."),
    fingerprint: str = typer.Option(
        "", help="The server certificate's SHA-256 fingerprint, checked before trusting it."
    ),
    accept_fingerprint: bool = typer.Option(
        False,
        "--accept-fingerprint",
        help="Trust the certificate the server shows without --fingerprint (printed first).",
    ),
    state_dir: Path = StateDir,
) -> None:
    """Enrol with the server: pin its certificate and store this agent's credential."""
    import socket
    import sys

    from puffin.agent.enrolment import enroll as enrol

    def confirm(seen: str) -> bool:
        typer.echo(f"The server's certificate has SHA-256 fingerprint\n  {seen}")
        return typer.confirm("Is this the fingerprint the console shows?", default=False)

    interactive = sys.stdin.isatty() and not fingerprint and not accept_fingerprint
    try:
        enrolment = enrol(
            server=server,
            token=token,
            name=name or socket.gethostname(),
            state_dir=state_dir,
            expected_fingerprint=fingerprint or None,
            accept_fingerprint=accept_fingerprint,
            confirm=confirm if interactive else None,
        )
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"enrolled as {enrolment.name} ({enrolment.agent_id})")
    typer.echo(f"pinned server certificate SHA-256 {enrolment.fingerprint}")


@app.command("run")
def run(
    log: list[str] = typer.Option([], "--log", help=launch.HELP["log"]),
    state_dir: Path = StateDir,
    config: Path | None = typer.Option(None, "--config", help=launch.HELP["config"]),
    seconds: float = typer.Option(0, help=launch.HELP["seconds"]),
) -> None:
    """Collect and deliver events until stopped."""
    # `python -m puffin.agent run` reaches launch.run without typer (see puffin.agent.launch).
    status = launch.run(log, state_dir, config, seconds)
    if status:
        raise typer.Exit(status)


@app.command("status")
def status(state_dir: Path = StateDir) -> None:
    """Show the enrolment and the outbox counters."""
    try:
        enrolment, _ = state.load(state_dir)
    except FileNotFoundError as error:
        typer.echo("not enrolled", err=True)
        raise typer.Exit(1) from error
    from puffin.agent.outbox import Outbox

    outbox = Outbox(state_dir / runner.OUTBOX_FILE)
    typer.echo(f"agent {enrolment.name} ({enrolment.agent_id}) → {enrolment.server}")
    typer.echo(f"pinned certificate SHA-256 {enrolment.fingerprint}")
    for key, value in outbox.counters().items():
        typer.echo(f"{key}: {value}")
    for letter in outbox.dead_letters()[:20]:
        typer.echo(
            f"dead letter (batch {letter['sequence']}, {letter['status']} at {letter['at']}): "
            f"{letter['reason'][:200]}"
        )
    outbox.close()


@app.command("requeue")
def requeue(state_dir: Path = StateDir) -> None:
    """Queue the events the server refused (the dead letters) again, e.g. after an upgrade."""
    from puffin.agent.outbox import Outbox

    if not (state_dir / runner.OUTBOX_FILE).exists():
        typer.echo(f"error: no outbox in {state_dir}", err=True)
        raise typer.Exit(1)
    outbox = Outbox(state_dir / runner.OUTBOX_FILE)
    moved = outbox.requeue()
    outbox.close()
    typer.echo(f"queued {moved} event(s) again")


@app.command("install")
def install(
    state_dir: Path = StateDir,
    config: Path = typer.Option(Path("/etc/puffin-agent/agent.json"), help="Local configuration."),
    unit_dir: Path = typer.Option(Path("/etc/systemd/system"), help="Where to write the unit."),
) -> None:
    """Write the systemd unit and a starting configuration; then enable the service."""
    from puffin.agent.install import UNIT_NAME
    from puffin.agent.install import install as write_files

    try:
        done = write_files(state_dir=state_dir, config_file=config, unit_dir=unit_dir)
    except OSError as error:
        typer.echo(f"error: {error} (run as root to write system folders)", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"wrote {done.unit}")
    typer.echo(f"{'wrote' if done.config_written else 'kept'} {done.config}")
    typer.echo("next: puffin agent enroll --server https://HOST:8443 --token TOKEN")
    typer.echo(f"then: systemctl daemon-reload && systemctl enable --now {UNIT_NAME}")
