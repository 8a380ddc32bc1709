"""Pydantic models of the intel domain: fixer runs as the API and console show them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from puffin.core.pagination import Page


class RunStatus(StrEnum):
    """How a run ended."""

    DONE = "done"
    SKIPPED = "skipped"
    PARTIAL = "partial"
    FAILED = "failed"


class RunTrigger(StrEnum):
    """What started a run."""

    WEBHOOK = "webhook"
    CLI = "cli"


class DecisionRead(BaseModel):
    """A false-positive verdict on one attribute and where it came from."""

    attribute_uuid: str
    type: str
    value: str
    source: str
    detail: str
    action: str


class ChangeRead(BaseModel):
    """One change applied to MISP."""

    kind: str
    target: str
    new_value: str
    attribute_type: str = ""
    attribute_value: str = ""


class RunCreate(BaseModel):
    """What the caller knows about a finished (or failed) run."""

    trigger: RunTrigger
    event_id: str = Field(max_length=64)
    event_uuid: str = Field(default="", max_length=64)
    event_info: str = ""
    status: RunStatus
    dry_run: bool = False
    skipped_reason: str | None = None
    started_at: datetime
    finished_at: datetime
    duration_seconds: float = 0.0
    attributes: int = 0
    lookups: int = 0
    not_looked_up: int = 0
    misp_write_calls: int = 0
    decisions: list[DecisionRead] = Field(default_factory=list)
    changes: list[ChangeRead] = Field(default_factory=list)
    errors: list[str] = Field(default_factory=list)


class RunRead(BaseModel):
    """A run as lists show it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    organisation_id: uuid.UUID
    trigger: str
    event_id: str
    event_uuid: str
    event_info: str
    status: RunStatus
    dry_run: bool
    skipped_reason: str | None
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    attributes: int
    false_positives: int
    changes_count: int
    lookups: int
    not_looked_up: int
    misp_write_calls: int
    errors: list[str]


class RunDetail(RunRead):
    """A run with each decision and change."""

    decisions: list[DecisionRead]
    changes: list[ChangeRead]


RunPage = Page[RunRead]


class RunFilter(BaseModel):
    """Which runs a list shows."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus | None = None
    event: str | None = Field(default=None, max_length=64, description="Event id or UUID.")
    since: datetime | None = Field(default=None, description="Started at or after (UTC if naive).")
    until: datetime | None = Field(default=None, description="Started before (UTC if naive).")
    with_false_positives: bool = False

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """Read a time without an offset (a console form's) as UTC."""
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value
