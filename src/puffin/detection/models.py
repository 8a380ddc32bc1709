"""Tables of per-organisation rule settings and the detection cursor."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, UTCDateTime, new_id


class RuleSetting(Base):
    """Whether one rule is enabled, and staged, in one organisation."""

    __tablename__ = "rule_setting"
    __table_args__ = (UniqueConstraint("organisation_id", "rule_id"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    staged: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DetectionCursor(Base):
    """How far detection has read the event store; moved in the same commit as alerts."""

    __tablename__ = "detection_cursor"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
