"""Pydantic models of alerts, their filters, updates and dashboard statistics."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from puffin.core.pagination import Page


class AlertStatus(StrEnum):
    """Where an alert stands in triage."""

    NEW = "new"
    ACKNOWLEDGED = "acknowledged"
    TRUE_POSITIVE = "closed-true-positive"
    FALSE_POSITIVE = "closed-false-positive"


OPEN_STATUSES = (AlertStatus.NEW, AlertStatus.ACKNOWLEDGED)


class Level(StrEnum):
    """Sigma's rule levels."""

    INFORMATIONAL = "informational"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


# Sigma level -> Puffin's 0-15 severity scale.
SEVERITY = {
    Level.INFORMATIONAL: 3,
    Level.LOW: 5,
    Level.MEDIUM: 8,
    Level.HIGH: 12,
    Level.CRITICAL: 15,
}


class Detection(BaseModel):
    """A rule match handed over by the detection worker."""

    rule_id: str = Field(max_length=100)
    rule_title: str = Field(max_length=300)
    level: Level = Level.MEDIUM
    tags: list[str] = Field(default_factory=list)
    source_id: uuid.UUID | None = None
    source_name: str = ""
    event_id: int | None = None
    event: dict[str, Any] = Field(default_factory=dict)
    matched: dict[str, Any] = Field(default_factory=dict)
    event_time: datetime | None = None
    dedupe_fields: list[str] = Field(default_factory=list)
    dedupe_window_seconds: int = Field(default=0, ge=0)
    staged: bool = False


class AlertRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organisation_id: uuid.UUID
    rule_id: str
    rule_title: str
    level: Level
    severity: int
    tactics: list[str]
    techniques: list[str]
    source_id: uuid.UUID | None
    source_name: str
    event_id: int | None
    status: AlertStatus
    assignee: str | None
    hits: int
    staged: bool
    first_seen: datetime
    last_seen: datetime
    created_at: datetime
    updated_at: datetime


class CommentRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    author: str
    text: str
    created_at: datetime


class AlertDetail(AlertRead):
    event: dict[str, Any]
    matched: dict[str, Any]
    comments: list[CommentRead] = Field(default_factory=list)


class AlertUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: AlertStatus | None = None
    assignee: str | None = Field(default=None, max_length=150)


class CommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=20_000)


class StagedFilter(StrEnum):
    """Whether a list shows alerts of staged rules, which are stored but not forwarded."""

    EXCLUDE = "exclude"
    INCLUDE = "include"
    ONLY = "only"


class AlertFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: Level | None = None
    min_severity: int | None = Field(default=None, ge=0, le=15)
    rule_id: str | None = Field(default=None, max_length=100)
    source_id: uuid.UUID | None = None
    agent: str | None = Field(
        default=None, max_length=200, description="the agent's (or syslog source's) name contains"
    )
    status: AlertStatus | None = None
    open_only: bool = False
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = Field(default=None, max_length=200)
    staged: StagedFilter = Field(
        default=StagedFilter.EXCLUDE,
        description="alerts of staged rules: `exclude` (default), `include` or `only`",
    )
    updated_since: datetime | None = None

    @field_validator("since", "until", "updated_since")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Read a time without a zone (the console's datetime-local inputs) as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class AlertChanges(BaseModel):
    """Alerts changed after a moment: those a filter keeps, the ids of the rest, and until when."""

    matching: list[AlertRead]
    gone: list[uuid.UUID]
    until: datetime


class CountItem(BaseModel):
    key: str
    count: int


class AlertStats(BaseModel):
    """What the dashboard draws."""

    since: datetime
    until: datetime
    bucket_seconds: int
    over_time: list[tuple[datetime, int]]
    by_level: list[CountItem]
    top_rules: list[CountItem]
    top_sources: list[CountItem]
    tactics: list[CountItem]


AlertPage = Page[AlertRead]
