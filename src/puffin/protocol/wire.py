"""Wire models shared by the agent and the server's agent gateway (pydantic only).

The running agent uses the standard-library twins in `puffin.protocol.messages` (same
fields and limits), which also hold the header names and sequence limits.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from puffin.protocol.messages import AGENT_HEADER as AGENT_HEADER
from puffin.protocol.messages import GATEWAY_PREFIX as GATEWAY_PREFIX
from puffin.protocol.messages import MAX_SEQUENCE as MAX_SEQUENCE
from puffin.protocol.messages import SEQUENCE_EPOCH as SEQUENCE_EPOCH
from puffin.protocol.messages import SEQUENCE_HEADER as SEQUENCE_HEADER

ActionName = Annotated[str, Field(min_length=1, max_length=40)]


class EnrollRequest(BaseModel):
    """What an endpoint sends to enrol."""

    token: str = Field(min_length=10, max_length=200)
    name: str = Field(min_length=1, max_length=200)
    hostname: str = Field(default="", max_length=255)
    os_name: str = Field(default="", max_length=100)
    os_version: str = Field(default="", max_length=200)
    agent_version: str = Field(default="", max_length=50)


class EnrollResponse(BaseModel):
    """The agent's identity and credential, given once."""

    model_config = ConfigDict(extra="ignore")

    agent_id: uuid.UUID
    organisation_id: uuid.UUID
    credential: str
    groups: list[str]
    sequence_start: int = Field(default=1, ge=1, le=MAX_SEQUENCE)


class BatchAck(BaseModel):
    """The server stored (or had already stored) the batch with this sequence."""

    sequence: int
    stored: int
    duplicate: bool


class TaskResult(BaseModel):
    """What the agent reports for one task."""

    task_id: uuid.UUID
    ok: bool
    result: dict[str, Any] = Field(default_factory=dict)


class KeepAlive(BaseModel):
    """The agent's periodic report: health counters, what it allows, and finished tasks.

    `config_hash` is the hash of the server configuration the agent applies ("" before
    the first); `events_sent` counts the events acknowledged since the last keep-alive
    the server answered; `allowed_actions` are the response actions its local
    configuration permits (None: not reported).
    """

    model_config = ConfigDict(extra="ignore")

    health: dict[str, Any] | None = None
    config_hash: str = Field(default="", max_length=64)
    task_results: list[TaskResult] = Field(default_factory=list, max_length=1000)
    events_sent: int = Field(default=0, ge=0, le=2**40)
    allowed_actions: list[ActionName] | None = Field(default=None, max_length=20)


class Task(BaseModel):
    """An allow-listed action the server asks for."""

    model_config = ConfigDict(extra="ignore")

    id: uuid.UUID
    action: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class KeepAliveReply(BaseModel):
    """Configuration when its hash differs from the agent's, and tasks to run."""

    model_config = ConfigDict(extra="ignore")

    config_hash: str
    config: dict[str, Any] | None
    tasks: list[Task]
