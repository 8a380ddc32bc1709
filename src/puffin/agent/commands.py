"""Periodic commands from the agent's local configuration file (like Wazuh's full_command).

Each command runs every `interval` seconds as an argument list (never through a shell),
with its output (stdout and stderr together) in a temporary file so neither the agent
loop nor the command waits on a pipe, and is killed with its process group after
`timeout` seconds. Its result becomes one event, only when it differs from the previous
result (unless `always: true`):

`module: "command"`, `title`, `command_name`, `command` (the argv, shell-quoted for
reading), `output` (at most 60 KiB, `truncated` says when cut), `exit_code` (None when it
did not start or timed out), `timed_out`, `error` (why it did not start), `full_log`,
`timestamp`.

A digest of the last result is saved as an outbox position (`command:<name>`) in the same
transaction as the event, so a restart neither repeats nor misses a change.

Security: the server may deliver agent configuration, but it can never make the agent run
a program. `CommandsCollector.from_config(..., local=False)` (configuration that came from
the server) refuses every command, runs nothing and writes one event naming what was
refused; only the agent's local configuration file, which only the endpoint's
administrator can edit, is read with `local=True`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from puffin.agent.outbox import Outbox

MAX_OUTPUT = 60 * 1024
DEFAULT_INTERVAL = 360.0
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class CommandSpec:
    """One configured command."""

    name: str
    argv: tuple[str, ...]
    interval: float = DEFAULT_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    always: bool = False


@dataclass
class _Run:
    spec: CommandSpec
    process: subprocess.Popen[bytes] | None
    output: IO[bytes]
    deadline: float
    error: str = ""


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _notice(title: str, detail: str) -> dict[str, Any]:
    return {
        "module": "command",
        "title": title,
        "full_log": f"command: {title}: {detail}",
        "timestamp": _utc_now(),
    }


def parse_spec(item: Any) -> CommandSpec:
    """Validate one configured command; raise ValueError saying what is wrong."""
    if not isinstance(item, Mapping):
        raise ValueError(f"a command must be a mapping, not {type(item).__name__}")
    name, argv = item.get("name"), item.get("argv")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a command needs a name: {dict(item)!r}")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise ValueError(f"command {name!r}: argv must be a non-empty list of strings")
    if not argv[0]:
        raise ValueError(f"command {name!r}: argv[0] is empty")
    interval = float(item.get("interval", DEFAULT_INTERVAL))
    timeout = float(item.get("timeout", DEFAULT_TIMEOUT))
    if interval < 1 or timeout <= 0:
        raise ValueError(f"command {name!r}: interval must be ≥ 1 s and timeout > 0 s")
    return CommandSpec(name, tuple(argv), interval, timeout, bool(item.get("always", False)))


class CommandsCollector:
    """Runs the locally configured commands on their schedules and reports changed output."""

    name = "commands"

    def __init__(self, commands: list[CommandSpec], problems: list[str] | None = None) -> None:
        self.commands = commands
        self._problems = list(problems or [])
        self._refused: list[str] = []
        self._next_run = {spec.name: 0.0 for spec in commands}
        self._runs: dict[str, _Run] = {}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], state_dir: Path, *, local: bool
    ) -> CommandsCollector:
        """Build from `{"commands": [{"name", "argv", "interval", "timeout", "always"}]}`.

        `local` must be True only for the agent's own configuration file: commands in
        configuration from the server are refused (see the module docstring).
        """
        items = config.get("commands", [])
        if not isinstance(items, list):
            return cls([], [f"commands must be a list, not {type(items).__name__}"])
        if not local:
            refused = cls([])
            refused._refused = [str(i.get("name", "?")) for i in items if isinstance(i, Mapping)]
            refused._refused += ["?"] * (len(items) - len(refused._refused))
            return refused
        specs: list[CommandSpec] = []
        problems: list[str] = []
        for item in items:
            try:
                spec = parse_spec(item)
            except (ValueError, TypeError) as error:
                problems.append(str(error))
                continue
            if any(known.name == spec.name for known in specs):
                problems.append(f"command {spec.name!r} is configured twice; the first is kept")
                continue
            specs.append(spec)
        return cls(specs, problems)

    @property
    def running(self) -> list[str]:
        """Names of the commands running now."""
        return sorted(self._runs)

    def collect(self, outbox: Outbox, now: float) -> int:
        """Start the commands that are due; report those that finished or timed out."""
        written = self._report_problems(outbox)
        for spec in self.commands:
            if spec.name not in self._runs and now >= self._next_run[spec.name]:
                self._runs[spec.name] = self._start(spec, now)
                self._next_run[spec.name] = now + spec.interval
        for name in list(self._runs):
            run = self._runs[name]
            finished = run.process is None or run.process.poll() is not None
            if finished or now >= run.deadline:
                del self._runs[name]
                written += self._report(outbox, run, timed_out=not finished)
        return written

    def _report_problems(self, outbox: Outbox) -> int:
        notices = [_notice("configuration entry ignored", p) for p in self._problems]
        if self._refused:
            notices.append(
                _notice(
                    "Server-supplied commands refused",
                    f"{', '.join(self._refused)}: commands are taken only from the agent's "
                    "local configuration file",
                )
            )
        self._problems, self._refused = [], []
        return outbox.add(notices) if notices else 0

    def _start(self, spec: CommandSpec, now: float) -> _Run:
        output = tempfile.TemporaryFile()  # noqa: SIM115 - closed when the run is reported
        try:
            process = subprocess.Popen(  # noqa: S603 - an argument list from the local file
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed whole on timeout
            )
        except OSError as error:
            return _Run(spec, None, output, now, error=f"{type(error).__name__}: {error}")
        return _Run(spec, process, output, now + spec.timeout)

    def _report(self, outbox: Outbox, run: _Run, *, timed_out: bool) -> int:
        exit_code = None
        if run.process is not None:
            if timed_out:
                _kill_group(run.process)
            exit_code = None if timed_out else run.process.returncode
        run.output.seek(0)
        data = run.output.read(MAX_OUTPUT + 1)
        run.output.close()
        output = data[:MAX_OUTPUT].decode("utf-8", errors="replace")
        result = [exit_code, timed_out, run.error, output]
        digest = hashlib.sha256(json.dumps(result).encode()).hexdigest()
        source = f"command:{run.spec.name}"
        if digest == outbox.position(source) and not run.spec.always:
            return 0
        event = _event(run.spec, output, exit_code, timed_out, run.error)
        event["truncated"] = len(data) > MAX_OUTPUT
        return outbox.add([event], {source: digest})

    def close(self) -> None:
        """Kill the commands still running."""
        for run in self._runs.values():
            if run.process is not None and run.process.poll() is None:
                _kill_group(run.process)
            run.output.close()
        self._runs.clear()


def _event(
    spec: CommandSpec, output: str, exit_code: int | None, timed_out: bool, error: str
) -> dict[str, Any]:
    if error:
        status = f"did not start ({error})"
    elif timed_out:
        status = f"timed out after {spec.timeout:g} s"
    else:
        status = f"exited {exit_code}"
    return {
        "module": "command",
        "title": f"Command output: {spec.name}",
        "command_name": spec.name,
        "command": shlex.join(spec.argv),
        "output": output,
        "exit_code": exit_code,
        "timed_out": timed_out,
        "error": error,
        "full_log": f"command {spec.name!r} {status}:\n{output}",
        "timestamp": _utc_now(),
    }


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=5)
