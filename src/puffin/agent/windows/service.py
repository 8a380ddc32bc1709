"""The agent as a Windows service: pywin32's ServiceFramework around the same runner that
`puffin agent run` uses.

    python -m puffin.agent.windows.service --state-dir DIR --config FILE --startup auto install
    python -m puffin.agent.windows.service start | stop | restart | remove | debug

Options of our own (`--state-dir`, `--config`) are taken out of the command line and
saved in the service's `Parameters` registry key when it is installed or updated; the
rest goes to `win32serviceutil.HandleCommandLine` (`--startup`, `install`, `update`, …).
When the service starts it reads them back, opens the enrolled agent and runs it on a
thread until the service is stopped; stopping sets the runner's stop event, and the
runner sends what it can and closes its outbox before the service reports "stopped".
The agent logs to `agent.log` (rotated) in its state directory.

This module imports on every platform (the service class exists only where pywin32 is
installed), so the option handling and the runner's start and stop are tested on Linux.
It has not been run as a service on Windows here; see docs/agent.md.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_NAME = "PuffinAgent"
DISPLAY_NAME = "Puffin MDR agent"
DESCRIPTION = "Sends Windows events, FIM, registry and inventory changes to the Puffin server."
STOP_TIMEOUT = 60.0
LOG_FILE = "agent.log"
OPTIONS = {"--state-dir": "state_dir", "--config": "config"}
SAVING_COMMANDS = frozenset({"install", "update"})
CLASS_STRING = "puffin.agent.windows.service.PuffinAgentService"

logger = logging.getLogger(__name__)


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return `%ProgramData%\\Puffin\\Agent`, where the installer puts the agent's state."""
    environ = os.environ if environ is None else environ
    root = environ.get("ProgramData") or environ.get("PROGRAMDATA") or r"C:\ProgramData"
    return Path(root) / "Puffin" / "Agent"


@dataclass(frozen=True)
class ServiceOptions:
    """Where the agent keeps its state and which local configuration it reads."""

    state_dir: Path
    config: Path | None = None


def parse_arguments(argv: list[str]) -> tuple[ServiceOptions, list[str]]:
    """Take `--state-dir` and `--config` (either `--x VALUE` or `--x=VALUE`) out of argv.

    Returns the options and the remaining arguments for HandleCommandLine; raises
    ValueError for an option without a value.
    """
    found: dict[str, str] = {}
    rest: list[str] = []
    items = iter(argv)
    for item in items:
        name, equals, value = item.partition("=")
        if name not in OPTIONS:
            rest.append(item)
            continue
        if not equals:
            value = next(items, "")
        if not value or value.startswith("--"):
            raise ValueError(f"{name} needs a value")
        found[OPTIONS[name]] = value
    state_dir = Path(found["state_dir"]) if "state_dir" in found else default_state_dir()
    config = Path(found["config"]) if "config" in found else None
    return ServiceOptions(state_dir=state_dir, config=config), rest


def command_of(arguments: list[str]) -> str:
    """Return the HandleCommandLine command (install, start, …) in the arguments, or ""."""
    takes_value = {"--password", "--username", "--startup", "--perfmonini", "--perfmondll",
                   "--wait"}  # fmt: skip
    skip = False
    for item in arguments:
        if skip:
            skip = False
        elif item in takes_value:
            skip = True
        elif not item.startswith("-"):
            return item
    return ""


class AgentRunner:
    """Runs the enrolled agent on a thread until `stop()`; what the service wraps."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, options: ServiceOptions) -> None:
        """Open the agent and start it; raise ValueError or OSError if it cannot start."""
        from puffin.agent import runner
        from puffin.agent.collectors import load_local

        try:
            settings = runner.settings_from([], local=load_local(options.config))
        except ValueError as error:
            raise ValueError(f"{options.config}: {error}") from error
        try:
            agent = runner.Agent.open(options.state_dir, settings)
        except FileNotFoundError as error:
            raise OSError(
                f"not enrolled in {options.state_dir}; run `puffin agent enroll` first ({error})"
            ) from error
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(
            target=self._run, args=(agent,), name="puffin-agent", daemon=True
        )
        self._thread.start()

    def _run(self, agent: Any) -> None:
        try:
            agent.run(stop=self._stop)
        except BaseException as error:  # reported by the service, which then stops
            logger.exception("the agent stopped on an error")
            self.error = error
        finally:
            agent.close()

    @property
    def running(self) -> bool:
        """Whether the agent's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the agent to end; return whether it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Ask the agent to stop and wait for it; return whether it ended in time."""
        self._stop.set()
        return self.wait(timeout)


def log_to_file(state_dir: Path) -> logging.Handler:
    """Send the agent's log to `agent.log` in the state directory (5 MiB, 3 kept)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        state_dir / LOG_FILE, maxBytes=5 * 1024 * 1024, backupCount=3, encoding="utf-8"
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


try:  # pywin32, on Windows only
    import servicemanager
    import win32service
    import win32serviceutil
except ImportError:
    win32serviceutil = None


def save_options(options: ServiceOptions) -> None:
    """Keep the options in the service's Parameters key (Windows only)."""
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "StateDir", str(options.state_dir))
    config = "" if options.config is None else str(options.config)
    win32serviceutil.SetServiceCustomOption(SERVICE_NAME, "Config", config)


def load_options() -> ServiceOptions:
    """Read the options saved at install time (Windows only)."""
    state_dir = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "StateDir", "")
    config = win32serviceutil.GetServiceCustomOption(SERVICE_NAME, "Config", "")
    return ServiceOptions(
        state_dir=Path(state_dir) if state_dir else default_state_dir(),
        config=Path(config) if config else None,
    )


if win32serviceutil is not None:

    class PuffinAgentService(win32serviceutil.ServiceFramework):  # type: ignore[misc]
        """The Windows service: starts the runner, stops it when the service is stopped."""

        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION

        def __init__(self, args: Any) -> None:
            super().__init__(args)
            self.runner = AgentRunner()

        def SvcStop(self) -> None:
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=60_000)
            self.runner.stop()

        def SvcDoRun(self) -> None:
            options = load_options()
            log_to_file(options.state_dir)
            try:
                self.runner.start(options)
            except (OSError, ValueError) as error:
                servicemanager.LogErrorMsg(f"{DISPLAY_NAME} not started: {error}")
                raise
            servicemanager.LogInfoMsg(f"{DISPLAY_NAME} started ({options.state_dir})")
            self.runner.wait()
            if self.runner.error is not None:
                servicemanager.LogErrorMsg(f"{DISPLAY_NAME} stopped: {self.runner.error!r}")
                raise RuntimeError(str(self.runner.error))  # a failure: recovery restarts it

else:
    PuffinAgentService = None  # type: ignore[assignment,misc]


def main(argv: list[str] | None = None) -> int:
    """Handle the service command line (see the module)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        options, rest = parse_arguments(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if win32serviceutil is None or PuffinAgentService is None:
        print("error: the Windows service needs Windows and pywin32", file=sys.stderr)
        return 1
    command = command_of(rest)
    if command == "debug":
        log_to_file(options.state_dir)
        save_options(options)
    # The class by its package path, so the service host imports it from site-packages
    # rather than putting this folder (inventory.py, registry.py, …) first on sys.path.
    win32serviceutil.HandleCommandLine(
        PuffinAgentService, serviceClassString=CLASS_STRING, argv=[sys.argv[0], *rest]
    )
    if command in SAVING_COMMANDS:
        save_options(options)
        print(f"{SERVICE_NAME}: state {options.state_dir}, configuration {options.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
