"""`python -m puffin.agent run`: the long-running agent, started without typer.

typer (which validates options through pydantic) and pydantic together cost a process
about 20 MB of RSS, half of the agent's budget, for parsing a handful of options once.
The service units therefore start `python -m puffin.agent run`, which `__main__` sends
here: the same options as `puffin agent run` (typer, in `puffin.agent.cli`, which calls
`run` below), parsed with argparse. tests/unit/agent/test_launch.py keeps the two in step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/puffin-agent")
HELP = {
    "log": "A file glob to follow, optionally GLOB::json or GLOB::plain.",
    "state_dir": "Where the agent keeps its state.",
    "config": "Local configuration (JSON): logs, fim, rootcheck, inventory, journald, audit, "
    "commands. It adds to the group configuration the server sends.",
    "seconds": "Stop after this many seconds (0: run until stopped).",
}


def run(log: list[str], state_dir: Path, config: Path | None, seconds: float) -> int:
    """Collect and deliver events until stopped; return the exit status (errors on stderr)."""
    from puffin.agent import runner
    from puffin.agent.collectors import load_local

    try:
        settings = runner.settings_from(log, local=load_local(config))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        print(f"error: {config}: {error}", file=sys.stderr)
        return 2
    try:
        agent = runner.Agent.open(state_dir, settings)
    except FileNotFoundError as error:
        print(f"error: not enrolled; run `puffin agent enroll` first ({error})", file=sys.stderr)
        return 1
    try:
        agent.run(stop_after=seconds or None)
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
    return 0


def parser() -> argparse.ArgumentParser:
    """Return the parser of `python -m puffin.agent run`."""
    parsing = argparse.ArgumentParser(
        prog="puffin-agent run", description="Collect and deliver events until stopped."
    )
    parsing.add_argument("--log", action="append", default=[], metavar="GLOB", help=HELP["log"])
    parsing.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help=HELP["state_dir"]
    )
    parsing.add_argument("--config", type=Path, default=None, help=HELP["config"])
    parsing.add_argument("--seconds", type=float, default=0.0, help=HELP["seconds"])
    return parsing


def main(argv: list[str]) -> int:
    """Parse the options of `run` (argv without the command name) and run the agent."""
    options = parser().parse_args(argv)
    if options.seconds < 0:
        print("error: --seconds must not be negative", file=sys.stderr)
        return 2
    return run(options.log, options.state_dir, options.config, options.seconds)
