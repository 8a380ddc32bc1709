"""Tables of detection alerts and their comments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, JSONDocument, UTCDateTime, new_id


class Alert(Base):
    """A rule match worth an analyst's look, with repeats folded in by its dedupe key."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_org_last_seen", "organisation_id", "last_seen"),
        Index("ix_alert_dedupe", "organisation_id", "rule_id", "dedupe_key", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[str] = mapped_column(String(100), index=True)
    rule_title: Mapped[str] = mapped_column(String(300))
    level: Mapped[str] = mapped_column(String(20), index=True)
    severity: Mapped[int] = mapped_column(Integer)
    tactics: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    techniques: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    source_id: Mapped[uuid.UUID | None] = mapped_column(GUID, nullable=True, index=True)
    source_name: Mapped[str] = mapped_column(String(200), default="")
    event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    event: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    matched: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(30), default="new", index=True)
    assignee: Mapped[str | None] = mapped_column(String(150), nullable=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), default="")
    hits: Mapped[int] = mapped_column(Integer, default=1)
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertComment(Base):
    """An analyst's note on an alert."""

    __tablename__ = "alert_comment"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    alert_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("alert.id", ondelete="CASCADE"), index=True
    )
    author: Mapped[str] = mapped_column(String(150))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
