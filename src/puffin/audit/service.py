"""Writing and reading the audit trail."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from puffin.audit.models import AuditEntry
from puffin.audit.schemas import AuditEntryRead, AuditFilter, AuditPage
from puffin.core.changes import get_actor, take_pending
from puffin.core.clock import utcnow
from puffin.core.pagination import PageParams, paginate


def write_pending(*, session: Session) -> int:
    """Turn the changes noted on this session into audit entries; return how many."""
    pending = take_pending(session)
    if not pending:
        return 0
    actor = get_actor(session)
    now = utcnow()
    for change in pending:
        session.add(
            AuditEntry(
                at=now,
                organisation_id=change.organisation_id,
                actor_kind=actor.kind,
                actor_id=actor.id,
                actor_name=actor.name,
                actor_ip=actor.ip,
                action=change.action,
                object_type=change.object_type,
                object_id=change.object_id,
                summary=change.summary[:500],
                changes=_json_safe(change.changes),
            )
        )
    session.flush()
    return len(pending)


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def list_entries(
    *,
    session: Session,
    organisation_id: uuid.UUID | None,
    audit_filter: AuditFilter,
    page: PageParams,
) -> AuditPage:
    """Return audit entries of one organisation (all of them when organisation_id is None)."""
    query = select(AuditEntry)
    if organisation_id is not None:
        query = query.where(AuditEntry.organisation_id == organisation_id)
    return paginate(
        session,
        _apply_filter(query, audit_filter),
        page=page,
        order_by=(AuditEntry.at.desc(), AuditEntry.id),
        read=AuditEntryRead.model_validate,
    )


def _apply_filter(query, audit_filter: AuditFilter):  # type: ignore[no-untyped-def]
    if audit_filter.actor:
        query = query.where(func.lower(AuditEntry.actor_name) == audit_filter.actor.lower())
    if audit_filter.action:
        query = query.where(AuditEntry.action == audit_filter.action)
    if audit_filter.object_type:
        query = query.where(AuditEntry.object_type == audit_filter.object_type)
    if audit_filter.object_id:
        query = query.where(AuditEntry.object_id == audit_filter.object_id)
    if audit_filter.since:
        query = query.where(AuditEntry.at >= audit_filter.since)
    if audit_filter.until:
        query = query.where(AuditEntry.at <= audit_filter.until)
    if audit_filter.text:
        pattern = "%" + audit_filter.text.lower().replace("%", r"\%").replace("_", r"\_") + "%"
        query = query.where(func.lower(AuditEntry.summary).like(pattern, escape="\\"))
    return query
