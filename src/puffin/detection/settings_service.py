"""Per-organisation rule switches (enabled, staged) and the detection cursor."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change
from puffin.core.clock import utcnow
from puffin.detection.models import DetectionCursor, RuleSetting


@dataclass(frozen=True)
class RuleSwitch:
    """A rule's state in one organisation; rules without a row are enabled and live."""

    enabled: bool = True
    staged: bool = False


def switches(*, session: Session) -> dict[tuple[uuid.UUID, str], RuleSwitch]:
    """Return every organisation's rule switches keyed by (organisation, rule id)."""
    return {
        (row.organisation_id, row.rule_id): RuleSwitch(enabled=row.enabled, staged=row.staged)
        for row in session.scalars(select(RuleSetting))
    }


def set_switch(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    rule_id: str,
    enabled: bool | None = None,
    staged: bool | None = None,
) -> RuleSwitch:
    """Enable, disable, stage or promote a rule for one organisation."""
    row = session.scalar(
        select(RuleSetting).where(
            RuleSetting.organisation_id == organisation_id, RuleSetting.rule_id == rule_id
        )
    )
    if row is None:
        row = RuleSetting(
            organisation_id=organisation_id, rule_id=rule_id, enabled=True, staged=False
        )
        session.add(row)
    before = {"enabled": row.enabled, "staged": row.staged}
    if enabled is not None:
        row.enabled = enabled
    if staged is not None:
        row.staged = staged
    row.updated_at = utcnow()
    session.flush()
    after = {"enabled": row.enabled, "staged": row.staged}
    record_change(
        session,
        action="configure",
        object_type="rule",
        object_id=rule_id,
        organisation_id=organisation_id,
        summary=f"rule {rule_id}: enabled={row.enabled}, staged={row.staged}",
        changes={k: [before[k], after[k]] for k in after if before[k] != after[k]},
    )
    return RuleSwitch(enabled=row.enabled, staged=row.staged)


def cursor_position(*, session: Session, name: str) -> int:
    """Return the stored cursor, 0 when detection has not run yet."""
    row = session.get(DetectionCursor, name)
    return row.position if row else 0


def move_cursor(*, session: Session, name: str, position: int) -> None:
    """Store the cursor; the caller commits it with the alerts it raised."""
    row = session.get(DetectionCursor, name)
    if row is None:
        row = DetectionCursor(name=name, position=position)
        session.add(row)
    row.position = position
    row.updated_at = utcnow()
    session.flush()
