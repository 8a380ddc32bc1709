"""The one pagination type used by every list endpoint."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

Item = TypeVar("Item")

MAX_PAGE_SIZE = 500


class PageParams(BaseModel):
    """Which slice of a list the caller asks for."""

    offset: int = Field(default=0, ge=0, le=10_000_000)
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)


class Page(BaseModel, Generic[Item]):
    """A slice of a list and the total it was taken from."""

    items: list[Item]
    total: int
    offset: int
    limit: int
