"""The agent's commands (`puffin agent …` and `python -m puffin.agent`): enrol, run, status."""

from __future__ import annotations

from pathlib import Path

import typer

from puffin.agent import runner, state

app = typer.Typer(no_args_is_help=True)

DEFAULT_STATE_DIR = Path("/var/lib/puffin-agent")
StateDir = typer.Option(DEFAULT_STATE_DIR, "--state-dir", help="Where the agent keeps its state.")


@app.command("enroll")
def enroll(
    server: str = typer.Option(..., help="The server, e.g. https://puffin.example:8443"),
    token: str = typer.Option(..., help="An enrolment token from the console."),
    name: str = typer.Option("", help="The agent's name (default: this host's name)."),
    fingerprint: str = typer.Option(
        "", help="The server certificate's SHA-256 fingerprint, to check before trusting it."
    ),
    state_dir: Path = StateDir,
) -> None:
    """Enrol with the server: pin its certificate and store this agent's credential."""
    import socket

    try:
        enrolment = runner.enroll(
            server=server,
            token=token,
            name=name or socket.gethostname(),
            state_dir=state_dir,
            expected_fingerprint=fingerprint or None,
        )
    except (ValueError, OSError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"enrolled as {enrolment.name} ({enrolment.agent_id})")
    typer.echo(f"pinned server certificate SHA-256 {enrolment.fingerprint}")


@app.command("run")
def run(
    log: list[str] = typer.Option(
        [], "--log", help="A file glob to follow, optionally GLOB::json or GLOB::plain."
    ),
    state_dir: Path = StateDir,
    config: Path | None = typer.Option(
        None,
        "--config",
        help="Local configuration (JSON): logs, fim, rootcheck, inventory, journald, audit, "
        "commands. It adds to the group configuration the server sends.",
    ),
    seconds: float = typer.Option(0, help="Stop after this many seconds (0: run until stopped)."),
) -> None:
    """Collect and deliver events until stopped."""
    from puffin.agent.collectors import load_local

    try:
        local = load_local(config)
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        typer.echo(f"error: {config}: {error}", err=True)
        raise typer.Exit(2) from error
    try:
        agent = runner.Agent.open(state_dir, runner.settings_from(log, local=local))
    except FileNotFoundError as error:
        typer.echo(f"error: not enrolled; run `puffin agent enroll` first ({error})", err=True)
        raise typer.Exit(1) from error
    try:
        agent.run(stop_after=seconds or None)
    except KeyboardInterrupt:
        pass
    finally:
        agent.outbox.close()


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
    outbox.close()


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
