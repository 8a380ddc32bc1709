"""Tables of the agent registry: agents, groups, enrolment tokens and tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from puffin.core.clock import utcnow
from puffin.core.db import Base
from puffin.core.types import GUID, JSONDocument, UTCDateTime, new_id


class AgentGroup(Base):
    """A named set of agents sharing one configuration."""

    __tablename__ = "agent_group"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(2000), default="")
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    config_version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EnrollmentToken(Base):
    """A secret an endpoint presents once to enrol; limited in time and uses."""

    __tablename__ = "enrollment_token"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    default_group: Mapped[str] = mapped_column(String(100), default="default")
    max_uses: Mapped[int | None] = mapped_column(Integer, nullable=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A re-enrolment token enrols this one agent again (and nothing else).
    agent_id: Mapped[uuid.UUID | None] = mapped_column(
        GUID, ForeignKey("agent.id", ondelete="CASCADE"), nullable=True
    )


class Agent(Base):
    """An enrolled endpoint (or a syslog source shown like one)."""

    __tablename__ = "agent"
    __table_args__ = (UniqueConstraint("organisation_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="agent")
    hostname: Mapped[str] = mapped_column(String(255), default="")
    os_name: Mapped[str] = mapped_column(String(100), default="")
    os_version: Mapped[str] = mapped_column(String(200), default="")
    agent_version: Mapped[str] = mapped_column(String(50), default="")
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    groups: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    credential_hash: Mapped[str] = mapped_column(String(64), default="")
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    health: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # Loaded only when read (the detail page): it can be large, and keep-alives, batches
    # and the agents list never need it.
    inventory: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict, deferred=True)
    inventory_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    events_received: Mapped[int] = mapped_column(BigInteger, default=0)
    # Events per minute lately: a moving average over the deliveries of the last minutes.
    event_rate: Mapped[float] = mapped_column(Float, default=0.0)
    config_applied: Mapped[str] = mapped_column(String(64), default="")
    # Response actions the agent's local configuration allows; None until it reports.
    allowed_actions: Mapped[list[str] | None] = mapped_column(JSONDocument, nullable=True)
    # How many times it enrolled: each enrolment numbers its batches in its own block.
    enrolments: Mapped[int] = mapped_column(Integer, default=1)


class AgentTask(Base):
    """Work for an agent, delivered with a keep-alive: a configuration or a response action."""

    __tablename__ = "agent_task"

    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=new_id)
    organisation_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("organisation.id", ondelete="CASCADE"), index=True
    )
    agent_id: Mapped[uuid.UUID] = mapped_column(
        GUID, ForeignKey("agent.id", ondelete="CASCADE"), index=True
    )
    action: Mapped[str] = mapped_column(String(50))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    result: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
