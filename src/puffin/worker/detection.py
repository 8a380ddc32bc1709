"""The live detection path: read new events from the store, match rules, raise alerts.

Alerts and the cursor are committed together, so after a crash detection resumes where
its last commit left off: no event is skipped, and none raises its alerts twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from puffin.alert import service as alert_service
from puffin.alert.outputs import AlertOutputs
from puffin.alert.schemas import Detection, Level
from puffin.core.changes import Actor, set_actor
from puffin.core.db import transaction
from puffin.detection import settings_service
from puffin.detection.detector import Detector
from puffin.detection.settings_service import RuleSwitch
from puffin.ingest.store import EventStore, StoredEvent

logger = logging.getLogger(__name__)

CURSOR_NAME = "live"
IDLE_SECONDS = 0.2  # pause after a batch that was not full (the live latency budget is 1 s)
_LIVE = RuleSwitch()  # a rule without a switch row: enabled, not staged


class RuleHit(Protocol):
    """What an evaluator reports for one rule that matched one event."""

    @property
    def rule_id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def level(self) -> str: ...

    @property
    def tags(self) -> Sequence[str]: ...

    @property
    def matched(self) -> Mapping[str, Any]: ...


class Evaluator(Protocol):
    """Anything that matches an event against a compiled rule set."""

    def evaluate(self, event: Mapping[str, Any]) -> Sequence[RuleHit]:
        """Return the rules that match the event."""
        ...


@dataclass(frozen=True)
class AlertPolicy:
    """How matches of one rule become alerts: dedupe fields and window."""

    dedupe_fields: tuple[str, ...] = ()
    dedupe_window_seconds: int = 0


class RulePolicies:
    """Each rule's alert policy: its own `puffin: dedupe` from the registry, else the default.

    Read from the registry's current snapshot on every call, so a reload that changes a
    rule's window takes effect with the rules themselves.
    """

    def __init__(self, current: Callable[[], Any], default: AlertPolicy) -> None:
        self._current = current
        self.default = default

    def __call__(self, rule_id: str) -> AlertPolicy:
        own = self._current().dedupe_of(rule_id)
        if own is None:
            return self.default
        return AlertPolicy(own.fields, own.window_seconds)


@dataclass
class DetectionStats:
    """Counters for the metrics page."""

    events: int = 0
    matches: int = 0
    alerts_created: int = 0
    alerts_folded: int = 0
    errors: int = 0


@dataclass
class DetectionWorker:
    """Moves the detection cursor over the event store in batches."""

    store: EventStore
    session_factory: sessionmaker[Session]
    evaluator_provider: Callable[[], Evaluator]
    evaluator_for: Callable[[uuid.UUID], Evaluator] | None = None
    policy_for: Callable[[str], AlertPolicy] = lambda _rule_id: AlertPolicy()
    source_names: Callable[[uuid.UUID], str] = lambda _source_id: ""
    batch_size: int = 2000
    stats: DetectionStats = field(default_factory=DetectionStats)
    outputs: AlertOutputs | None = None

    def run_once(self) -> int:
        """Process one batch of new events; return how many were read."""
        with transaction(self.session_factory) as session:
            set_actor(session, Actor.system("detection"))
            cursor = settings_service.cursor_position(session=session, name=CURSOR_NAME)
            events = self.store.read_after(cursor, limit=self.batch_size)
            if not events:
                return 0
            switches = settings_service.switches(session=session)
            shared = self.evaluator_provider() if self.evaluator_for is None else None
            detections: dict[uuid.UUID, list[Detection]] = {}
            for event in events:
                evaluator = shared or self._evaluator_for(event.organisation_id)
                self._detect(evaluator, switches, event, detections)
            for organisation_id, found in detections.items():
                self._raise(session, organisation_id, found)
            settings_service.move_cursor(session=session, name=CURSOR_NAME, position=events[-1].id)
        self.stats.events += len(events)
        return len(events)

    def _evaluator_for(self, organisation_id: uuid.UUID) -> Evaluator:
        assert self.evaluator_for is not None
        return self.evaluator_for(organisation_id)

    def _detect(
        self,
        evaluator: Evaluator,
        switches: dict[tuple[uuid.UUID, str], RuleSwitch],
        event: StoredEvent,
        detections: dict[uuid.UUID, list[Detection]],
    ) -> None:
        try:
            hits = evaluator.evaluate(event.data)
        except Exception:  # the engine counts rule errors itself; this guards the loop
            self.stats.errors += 1
            logger.exception("evaluating event %d failed", event.id)
            return
        for hit in hits:
            switch = switches.get((event.organisation_id, hit.rule_id), _LIVE)
            if not switch.enabled:
                continue
            self.stats.matches += 1
            found = detections.setdefault(event.organisation_id, [])
            found.append(self._detection(event, hit, switch))

    def _detection(self, event: StoredEvent, hit: RuleHit, switch: RuleSwitch) -> Detection:
        policy = self.policy_for(hit.rule_id)
        level = hit.level if hit.level in Level._value2member_map_ else Level.MEDIUM
        return Detection(
            rule_id=hit.rule_id,
            rule_title=hit.title,
            level=Level(level),
            tags=list(hit.tags),
            source_id=event.source_id,
            source_name=self.source_names(event.source_id),
            event_id=event.id,
            event={**event.data, "full_log": event.full_log or event.data.get("full_log", "")},
            matched=dict(hit.matched),
            event_time=event.event_time,
            dedupe_fields=list(policy.dedupe_fields),
            dedupe_window_seconds=policy.dedupe_window_seconds,
            staged=switch.staged,
        )

    def _raise(
        self, session: Session, organisation_id: uuid.UUID, detections: Sequence[Detection]
    ) -> None:
        """Raise a batch's detections of one organisation in event order, in one go."""
        created = alert_service.raise_alerts(
            session=session,
            organisation_id=organisation_id,
            detections=detections,
            outputs=self.outputs,
        )
        made = sum(created)
        self.stats.alerts_created += made
        self.stats.alerts_folded += len(created) - made

    def run_guarded(self) -> int:
        """Like `run_once`, but a failed batch is counted and logged (it is read again)."""
        try:
            return self.run_once()
        except Exception:
            self.stats.errors += 1
            logger.exception("detection batch failed; it will be retried")
            return 0

    async def run_forever(self, idle_seconds: float = IDLE_SECONDS) -> None:
        """Process batches as events arrive, until cancelled."""
        while True:
            if await asyncio.to_thread(self.run_guarded) < self.batch_size:
                await asyncio.sleep(idle_seconds)


class OrganisationDetectors:
    """One detector per organisation over the registry's current rules.

    Correlation state is per organisation, so one customer's failed logins never count
    toward another's threshold. A rule reload starts every organisation afresh.
    """

    def __init__(self, current: Callable[[], Any]) -> None:
        self._current = current
        self._snapshot: Any = None
        self._detectors: dict[uuid.UUID, Detector] = {}

    def __call__(self, organisation_id: uuid.UUID) -> Detector:
        snapshot = self._current()
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._detectors = {}
        detector = self._detectors.get(organisation_id)
        if detector is None:
            detector = Detector(snapshot.ruleset, snapshot.correlations)
            self._detectors[organisation_id] = detector
        return detector
