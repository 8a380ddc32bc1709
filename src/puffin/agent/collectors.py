"""Which collectors run, built from the agent's configuration and rebuilt when it changes.

The configuration is the server's group configuration with the local file's sections
added on top (the local file wins where both set a section). Sections: `fim`,
`rootcheck`, `inventory`, `journald`, `audit`, and — from the local file only —
`commands`. A collector whose section is unchanged keeps running; a changed one is
reconfigured in place when it can be, else rebuilt; a removed one is closed.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from puffin.agent.collector import Collector
from puffin.agent.outbox import Outbox

logger = logging.getLogger(__name__)

FACTORIES: dict[str, str] = {
    "fim": "puffin.agent.fim:FimCollector",
    "rootcheck": "puffin.agent.rootcheck:RootcheckCollector",
    "inventory": "puffin.agent.inventory:InventoryCollector",
    "journald": "puffin.agent.journald:JournaldCollector",
    "audit": "puffin.agent.audit:AuditCollector",
    "commands": "puffin.agent.commands:CommandsCollector",
}
LOCAL_ONLY = frozenset({"commands"})


def merge(server: Mapping[str, Any] | None, local: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the server's configuration with the local file's sections on top."""
    merged = {k: v for k, v in (server or {}).items() if k not in LOCAL_ONLY}
    merged.update(local or {})
    return merged


class Collectors:
    """The running collectors, keyed by configuration section."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.running: dict[str, Collector] = {}
        self._sections: dict[str, str] = {}
        self.problems: list[str] = []

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
            logger.warning("collector %s not started: %s", name, error)
            return
        self.running[name] = collector

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
            try:
                written += collector.collect(outbox, now)
            except Exception:  # one collector must not stop the others
                logger.exception("collector %s failed", name)
        return written

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
