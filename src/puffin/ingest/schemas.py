"""Pydantic models of stored events as the API returns them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from puffin.core.pagination import Page


class EventRead(BaseModel):
    id: int
    source_id: uuid.UUID
    received_at: datetime
    event_time: datetime
    module: str
    location: str
    full_log: str
    data: dict[str, Any]


class HistogramBucket(BaseModel):
    start: datetime
    count: int


class Histogram(BaseModel):
    since: datetime
    until: datetime
    bucket_seconds: float
    buckets: list[HistogramBucket]


EventPage = Page[EventRead]
