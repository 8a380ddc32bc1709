"""Forwarding: the one place where a new alert is handed on to outputs (cases, notifications).

An alert is *forwarded* when it is new (not folded into an open one) and its rule is not
staged in its organisation. Outputs register with the application's `AlertOutputs`; the
alert service calls `forward` from `raise_alert(s)` and nowhere else. Delivery waits for the
transaction that stored the alert to commit, so a rolled-back alert reaches no one. An
output that raises is logged and counted; the others still get the alert.

Promoting a staged rule forwards its later alerts only: alerts stored while it was staged
stay where they are (visible with the Alerts page's "staged" filter).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import event
from sqlalchemy.orm import Session

from puffin.alert.schemas import AlertRead
from puffin.core.state import AppState

logger = logging.getLogger(__name__)

STATE_KEY = "alert_outputs"
_PENDING = "puffin.alert.forward"


@dataclass(frozen=True)
class AlertForwarded:
    """A new, live (not staged) alert, after the transaction that stored it committed."""

    organisation_id: uuid.UUID
    alert: AlertRead


Output = Callable[[AlertForwarded], None]


@dataclass
class OutputStats:
    """Counters for operators: alerts forwarded, and output calls that raised."""

    forwarded: int = 0
    failures: dict[str, int] = field(default_factory=dict)


class AlertOutputs:
    """The outputs of one application, by name; owned by the app, never a module global."""

    def __init__(self) -> None:
        self._outputs: dict[str, Output] = {}
        self._lock = threading.Lock()
        self.stats = OutputStats()

    @property
    def names(self) -> tuple[str, ...]:
        """Return the names of the registered outputs."""
        return tuple(self._outputs)

    def register(self, name: str, output: Output) -> None:
        """Add an output under a name (a name given twice is refused)."""
        with self._lock:
            if name in self._outputs:
                raise ValueError(f"an alert output named {name!r} is registered already")
            self._outputs[name] = output

    def unregister(self, name: str) -> None:
        """Remove an output; an unknown name is ignored."""
        with self._lock:
            self._outputs.pop(name, None)

    def forward(self, *, session: Session, forwarded: AlertForwarded) -> None:
        """Queue the alert for every output, delivered once the session's transaction commits."""
        pending: list[AlertForwarded] | None = session.info.get(_PENDING)
        if pending is None:
            pending = session.info[_PENDING] = []
            event.listen(session, "after_commit", self._deliver)
            event.listen(session, "after_rollback", _discard)
        pending.append(forwarded)

    def _deliver(self, session: Session) -> None:
        pending: list[AlertForwarded] = session.info.get(_PENDING) or []
        session.info[_PENDING] = []
        with self._lock:
            outputs = list(self._outputs.items())
        for forwarded in pending:
            self.stats.forwarded += 1
            for name, output in outputs:
                try:
                    output(forwarded)
                except Exception:  # one broken output must not starve the others
                    self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
                    logger.exception("alert output %s failed on alert %s", name, forwarded.alert.id)


def alert_outputs(state: AppState) -> AlertOutputs:
    """Return the application's alert outputs."""
    outputs: AlertOutputs = state.extras[STATE_KEY]
    return outputs


def _discard(session: Session) -> None:
    if session.info.get(_PENDING):
        session.info[_PENDING] = []
