"""Pydantic models of audit entries and the filters analysts use on them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from puffin.core.pagination import Page


class AuditEntryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    at: datetime
    organisation_id: uuid.UUID | None
    actor_kind: str
    actor_id: uuid.UUID | None
    actor_name: str
    actor_ip: str | None
    action: str
    object_type: str
    object_id: str
    summary: str
    changes: dict[str, Any]


class AuditFilter(BaseModel):
    """Narrow the trail by actor, action, object and time."""

    model_config = ConfigDict(extra="forbid")

    actor: str | None = Field(default=None, max_length=200)
    action: str | None = Field(default=None, max_length=50)
    object_type: str | None = Field(default=None, max_length=50)
    object_id: str | None = Field(default=None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = Field(default=None, max_length=200)


AuditPage = Page[AuditEntryRead]
