"""What the agent page shows, read from the agent's record: health, FIM state, inventory,
and which response actions the agent allows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from puffin.endpoint.schemas import AgentDetail
from puffin.ingest.store import StoredEvent
from puffin.web.inventory import InventorySection, as_text, describe

INVENTORY_ORDER = ("os", "hardware", "network", "ports", "processes", "packages", "users")
COUNTERS = (
    ("queued", "Queued in its outbox"),
    ("sent", "Sent (acknowledged)"),
    ("dropped", "Dropped (outbox full)"),
    ("quarantined", "Quarantined (refused)"),
    ("tasks_waiting", "Tasks waiting"),
)
ACTIONS = {"block_ip": "block-ip", "unblock_ip": "unblock-ip", "kill_process": "kill-process"}


@dataclass
class CollectorRow:
    """One collector's line in the health table."""

    name: str
    running: bool
    events: str
    errors: str
    last_error: str
    last_error_at: str


@dataclass
class HealthView:
    """The agent's health as its last keep-alive reported it."""

    counters: list[tuple[str, str]] = field(default_factory=list)
    collectors: list[CollectorRow] = field(default_factory=list)
    version: str = ""
    last_delivery_error: str = ""
    config_state: str = ""


@dataclass
class FimView:
    """What file integrity monitoring watches, when it scanned, and what changed lately."""

    files: str = "—"
    paths: list[str] = field(default_factory=list)
    realtime: list[str] = field(default_factory=list)
    last_scan_started: str = "—"
    last_scan_finished: str = "—"
    scanning: bool = False
    changes: list[StoredEvent] = field(default_factory=list)


def _collectors(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    collectors = health.get("collectors")
    if not isinstance(collectors, dict):
        return {}
    return {str(k): v for k, v in collectors.items() if isinstance(v, dict)}


def _config_state(agent: AgentDetail) -> str:
    if agent.kind != "agent":
        return ""
    if not agent.config_applied:
        return "not applied yet"
    if agent.config_applied == agent.config_current:
        return f"up to date ({agent.config_current[:12]})"
    return f"changed; the agent applies it at its next keep-alive ({agent.config_applied[:12]})"


def health_view(agent: AgentDetail) -> HealthView:
    """Return the health panel's content."""
    health = agent.health or {}
    view = HealthView(
        version=as_text(health.get("version", agent.agent_version or "—")),
        last_delivery_error=as_text(health["last_delivery_error"])
        if health.get("last_delivery_error")
        else "",
        config_state=_config_state(agent),
    )
    view.counters = [(label, as_text(health[key])) for key, label in COUNTERS if key in health]
    for name, entry in sorted(_collectors(health).items()):
        view.collectors.append(
            CollectorRow(
                name=name,
                running=bool(entry.get("running", True)),
                events=as_text(entry.get("events", 0)),
                errors=as_text(entry.get("errors", 0)),
                last_error=as_text(entry.get("last_error")) if entry.get("last_error") else "",
                last_error_at=as_text(entry.get("last_error_at"))
                if entry.get("last_error_at")
                else "",
            )
        )
    return view


def fim_view(agent: AgentDetail, changes: list[StoredEvent]) -> FimView | None:
    """Return the FIM panel's content, or None when the agent runs no FIM and sent none."""
    state = _collectors(agent.health or {}).get("fim", {}).get("state")
    if not isinstance(state, dict) and not changes:
        return None
    view = FimView(changes=changes)
    if isinstance(state, dict):
        view.files = as_text(state.get("files", "—"))
        view.paths = [as_text(p) for p in state.get("paths") or []]
        view.realtime = [as_text(p) for p in state.get("realtime") or []]
        view.last_scan_started = as_text(state.get("last_scan_started"))
        view.last_scan_finished = as_text(state.get("last_scan_finished"))
        view.scanning = bool(state.get("scanning"))
    return view


def inventory_view(inventory: dict[str, Any]) -> list[InventorySection]:
    """Return the inventory's sections, the usual ones first."""
    names = [n for n in INVENTORY_ORDER if n in inventory]
    names += sorted(k for k in inventory if k not in INVENTORY_ORDER and k != "fim")
    return [describe(name, inventory[name]) for name in names]


def action_refusals(agent: AgentDetail) -> dict[str, str]:
    """Return, for each response action the agent does not allow, why it is unavailable."""
    if agent.allowed_actions is None:
        return {}
    allowed = set(agent.allowed_actions)
    return {
        action: f"this agent does not allow {name} (its response.allowed_actions)"
        for action, name in ACTIONS.items()
        if name not in allowed
    }
