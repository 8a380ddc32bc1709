"""Which collectors run, built from the agent's configuration and rebuilt when it changes.

The configuration is the server's group configuration with the local file merged into
it: within a section, mappings merge key by key, lists are joined (the group's items,
then the local file's that are not already there) and any other value (an interval,
`enabled`) is the local file's. So a local file adds log globs and FIM paths to the
group's; it cannot take items out of the group's lists. Sections: `logs`, `fim`,
`rootcheck`, `inventory`, `journald`, `audit`, and — from the local file only —
`commands`, `response` and `agent`. A collector whose section is unchanged keeps
running; a changed one is reconfigured in place when it can be, else rebuilt; a removed
one is closed.

Each collector's events, failures and last failure are counted for the keep-alive.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from puffin.agent.collector import Collector
from puffin.agent.outbox import Outbox
from puffin.protocol.config import merge_config

logger = logging.getLogger(__name__)

FACTORIES: dict[str, str] = {
    "fim": "puffin.agent.fim:FimCollector",
    "rootcheck": "puffin.agent.rootcheck:RootcheckCollector",
    "inventory": "puffin.agent.inventory:InventoryCollector",
    "journald": "puffin.agent.journald:JournaldCollector",
    "audit": "puffin.agent.audit:AuditCollector",
    "commands": "puffin.agent.commands:CommandsCollector",
}
# Windows collectors (puffin.agent.windows). Elsewhere they refuse to start, and the reason
# is kept in `problems`; on Windows the inventory also lists programs and accounts.
FACTORIES["eventlog"] = "puffin.agent.windows.eventlog:EventLogCollector"
FACTORIES["registry"] = "puffin.agent.windows.runkeys:RunKeyCollector"
if sys.platform == "win32":
    FACTORIES["inventory"] = "puffin.agent.windows.inventory:WindowsInventoryCollector"
LOCAL_ONLY = frozenset({"commands", "response", "agent"})
MAX_ERROR = 500


def merge(server: Mapping[str, Any] | None, local: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the server's configuration with the local file merged in (see the module)."""
    allowed = {k: v for k, v in (server or {}).items() if k not in LOCAL_ONLY}
    return merge_config(allowed, local or {})


@dataclass
class Health:
    """What one collector did: events written, failures, and the last failure."""

    events: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_at: str | None = None

    def failed(self, message: str) -> None:
        """Count a failure and keep its message."""
        self.errors += 1
        self.last_error = message[:MAX_ERROR]
        self.last_error_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Collectors:
    """The running collectors, keyed by configuration section."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.running: dict[str, Collector] = {}
        self._sections: dict[str, str] = {}
        self.problems: list[str] = []
        self.health: dict[str, Health] = {}

    def configure(self, config: Mapping[str, Any], *, local: Mapping[str, Any]) -> None:
        """Start, reconfigure or stop collectors to match the configuration."""
        for name in list(self.running):
            if name not in config or not _enabled(config[name]):
                self._stop(name)
        for name, section in config.items():
            if name not in FACTORIES or not _enabled(section):
                continue
            text = json.dumps(section, sort_keys=True, default=str)
            if self._sections.get(name) == text:
                continue
            self._start(name, section, from_local=name in local)
            self._sections[name] = text

    def _start(self, name: str, section: Mapping[str, Any], *, from_local: bool) -> None:
        current = self.running.get(name)
        try:
            if current is not None and hasattr(current, "apply_config"):
                current.apply_config(section)
                return
            if current is not None:
                self._stop(name)
            module_name, _, class_name = FACTORIES[name].partition(":")
            factory = getattr(importlib.import_module(module_name), class_name)
            if name in LOCAL_ONLY:
                collector = factory.from_config(section, self.state_dir, local=from_local)
            else:
                collector = factory.from_config(section, self.state_dir)
        except (ValueError, TypeError, OSError) as error:
            self.problems.append(f"{name}: {error}")
            self.health_of(name).failed(f"not started: {error}")
            logger.warning("collector %s not started: %s", name, error)
            return
        self.running[name] = collector

    def health_of(self, name: str) -> Health:
        """Return the counters of one collector (or of the log tailer, "logs")."""
        return self.health.setdefault(name, Health())

    def _stop(self, name: str) -> None:
        collector = self.running.pop(name, None)
        self._sections.pop(name, None)
        if collector is not None:
            collector.close()

    def collect(self, outbox: Outbox, now: float | None = None) -> int:
        """Give every collector its turn; one that fails is logged and tried again later."""
        now = time.monotonic() if now is None else now
        written = 0
        for name, collector in list(self.running.items()):
            health = self.health_of(name)
            try:
                count = collector.collect(outbox, now)
            except Exception as error:  # one collector must not stop the others
                logger.exception("collector %s failed", name)
                health.failed(f"{type(error).__name__}: {error}")
                continue
            health.events += count
            written += count
        return written

    def status(self) -> dict[str, dict[str, Any]]:
        """Return each collector's counters, running or not, with its own state if it has one."""
        report: dict[str, dict[str, Any]] = {}
        for name in sorted(set(self.health) | set(self.running)):
            entry: dict[str, Any] = asdict(self.health_of(name))
            entry["running"] = name in self.running or name == "logs"
            describe = getattr(self.running.get(name), "status", None)
            if callable(describe):
                try:
                    entry["state"] = describe()
                except Exception as error:  # a report must never stop the agent
                    entry["state_error"] = f"{type(error).__name__}: {error}"[:MAX_ERROR]
            report[name] = entry
        return report

    def close(self) -> None:
        """Stop every collector."""
        for name in list(self.running):
            self._stop(name)


def _enabled(section: Any) -> bool:
    return isinstance(section, Mapping) and section.get("enabled", True) is not False


def load_local(path: Path | None) -> dict[str, Any]:
    """Read the agent's local configuration file (JSON); a missing path gives {}."""
    if path is None or not path.exists():
        return {}
    data = json.loads(path.read_text("utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the configuration must be a JSON object")
    return data
