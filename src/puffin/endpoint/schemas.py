"""Pydantic models of agents, groups, enrolment tokens and tasks."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from puffin.core.pagination import Page
from puffin.core.types import NameStr


class AgentStatus(StrEnum):
    """Where an agent stands, derived from its last contact."""

    NEVER_CONNECTED = "never connected"
    ACTIVE = "active"
    DISCONNECTED = "disconnected"
    REVOKED = "revoked"


class TaskAction(StrEnum):
    """The only things the server may ask an agent to do."""

    CONFIGURE = "configure"
    BLOCK_IP = "block_ip"
    UNBLOCK_IP = "unblock_ip"
    KILL_PROCESS = "kill_process"


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EnrollmentTokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    expires_in_hours: int = Field(default=24, ge=1, le=24 * 365)
    max_uses: int | None = Field(default=None, ge=1, le=100_000)
    default_group: str = Field(default="default", min_length=1, max_length=100)


class EnrollmentTokenRead(_Read):
    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    prefix: str
    default_group: str
    max_uses: int | None
    uses: int
    expires_at: datetime
    revoked_at: datetime | None
    created_at: datetime
    agent_id: uuid.UUID | None = None


class EnrollmentTokenCreated(EnrollmentTokenRead):
    """The only response that carries the token; shown with the server's fingerprint."""

    token: str
    server_fingerprint: str | None = None


class EnrollmentRequest(BaseModel):
    """What an endpoint sends to enrol."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=10, max_length=200)
    name: NameStr
    hostname: str = Field(default="", max_length=255)
    os_name: str = Field(default="", max_length=100)
    os_version: str = Field(default="", max_length=200)
    agent_version: str = Field(default="", max_length=50)


class Enrolled(BaseModel):
    """What the server answers to an enrolment: the agent's identity and credential.

    `sequence_start` is the first batch sequence number of this enrolment: every
    enrolment of an agent numbers its batches in a block of its own, so a re-enrolled
    agent with an empty outbox never repeats a sequence the server has already stored.
    """

    agent_id: uuid.UUID
    organisation_id: uuid.UUID
    credential: str
    groups: list[str]
    sequence_start: int = 1


class AgentRead(_Read):
    id: uuid.UUID
    organisation_id: uuid.UUID
    name: str
    kind: str
    hostname: str
    os_name: str
    os_version: str
    agent_version: str
    ip: str | None
    groups: list[str]
    enrolled_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None
    events_received: int
    event_rate: float = 0.0
    status: AgentStatus = AgentStatus.NEVER_CONNECTED
    health: dict[str, Any] = Field(default_factory=dict)
    allowed_actions: list[str] | None = None


class AgentDetail(AgentRead):
    inventory: dict[str, Any] = Field(default_factory=dict)
    inventory_at: datetime | None = None
    config_applied: str = ""
    config_current: str = ""
    enrolments: int = 1


class AgentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    groups: list[str] | None = Field(default=None, max_length=50)


class GroupWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = Field(default="", max_length=2000)
    config: dict[str, Any] = Field(default_factory=dict)


class GroupRead(_Read):
    id: uuid.UUID
    name: str
    description: str
    config: dict[str, Any]
    config_version: int
    updated_at: datetime


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: TaskAction
    parameters: dict[str, Any] = Field(default_factory=dict)


class TaskRead(_Read):
    id: uuid.UUID
    agent_id: uuid.UUID
    action: str
    parameters: dict[str, Any]
    status: str
    result: dict[str, Any]
    created_at: datetime
    delivered_at: datetime | None
    finished_at: datetime | None


AgentPage = Page[AgentRead]
