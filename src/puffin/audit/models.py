"""The audit trail table: who changed what, in which organisation, and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, JSONDocument, UTCDateTime, new_id


class AuditEntry(Base):
    """One change made through the API, the console or the CLI."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_org_at", "organisation_id", "at"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    organisation_id: Mapped[uuid.UUID | None] = mapped_column(GUID, nullable=True)
    actor_kind: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(GUID, nullable=True)
    actor_name: Mapped[str] = mapped_column(String(200))
    actor_ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(50), index=True)
    object_type: Mapped[str] = mapped_column(String(50), index=True)
    object_id: Mapped[str] = mapped_column(String(64))
    summary: Mapped[str] = mapped_column(String(500))
    changes: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
