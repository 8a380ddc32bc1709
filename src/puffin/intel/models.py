"""Tables of the intel domain: the record of every MISP event fixer run."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, JSONDocument, UTCDateTime, new_id


class MispFixerRun(Base):
    """One run of the fixer on one event: what it decided, changed and failed to do."""

    __tablename__ = "misp_fixer_run"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    trigger: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(64), index=True)
    event_uuid: Mapped[str] = mapped_column(String(64), default="")
    event_info: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    skipped_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    attributes: Mapped[int] = mapped_column(Integer, default=0)
    false_positives: Mapped[int] = mapped_column(Integer, default=0)
    changes_count: Mapped[int] = mapped_column(Integer, default=0)
    lookups: Mapped[int] = mapped_column(Integer, default=0)
    not_looked_up: Mapped[int] = mapped_column(Integer, default=0)
    misp_write_calls: Mapped[int] = mapped_column(Integer, default=0)
    decisions: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    errors: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
