"""Change records: services note what they changed; the audit trail stores it on commit.

Services below the audit domain cannot import it, so they record changes on the session
(`record_change`), and the composition root installs a hook that turns them into audit
entries in the same transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from puffin.core.clock import utcnow

_PENDING_KEY = "puffin.pending_changes"
_ACTOR_KEY = "puffin.actor"


@dataclass(frozen=True)
class Actor:
    """Who is acting: a user, an API key's owner, an agent, or the system."""

    kind: str
    id: uuid.UUID | None
    name: str
    ip: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        """Return the actor used by the CLI and background jobs."""
        return cls(kind="system", id=None, name=name)


@dataclass(frozen=True)
class ChangeRecord:
    """One change to one object."""

    action: str
    object_type: str
    object_id: str
    organisation_id: uuid.UUID | None
    summary: str
    changes: dict[str, Any] = field(default_factory=dict)


def set_actor(session: Session, actor: Actor) -> None:
    """Mark who acts through this session."""
    session.info[_ACTOR_KEY] = actor


def get_actor(session: Session) -> Actor:
    """Return who acts through this session (the system when nobody was set)."""
    actor = session.info.get(_ACTOR_KEY)
    return actor if isinstance(actor, Actor) else Actor.system()


def record_change(
    session: Session,
    *,
    action: str,
    object_type: str,
    object_id: object,
    organisation_id: uuid.UUID | None,
    summary: str,
    changes: dict[str, Any] | None = None,
) -> None:
    """Note a change to be written to the audit trail when the session commits."""
    pending: list[ChangeRecord] = session.info.setdefault(_PENDING_KEY, [])
    pending.append(
        ChangeRecord(
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            organisation_id=organisation_id,
            summary=summary,
            changes=changes or {},
        )
    )


class Revocable(Protocol):
    """A row that can be revoked once: an API key, an agent, an enrolment token."""

    id: Any
    revoked_at: Any


def revoke_once(
    session: Session,
    row: Revocable,
    *,
    object_type: str,
    organisation_id: uuid.UUID,
    summary: str,
) -> None:
    """Mark the row revoked now and record it, unless it was revoked already."""
    if row.revoked_at is not None:
        return
    row.revoked_at = utcnow()
    session.flush()
    record_change(
        session,
        action="revoke",
        object_type=object_type,
        object_id=row.id,
        organisation_id=organisation_id,
        summary=summary,
    )


def take_pending(session: Session) -> list[ChangeRecord]:
    """Remove and return the changes noted on this session."""
    pending: list[ChangeRecord] = session.info.pop(_PENDING_KEY, [])
    return pending


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Return {field: [old, new]} for the fields whose value changed."""
    return {
        key: [before.get(key), value] for key, value in after.items() if before.get(key) != value
    }
