"""The one pagination type used by every list endpoint."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

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


def paginate(
    session: Session,
    query: Select[Any],
    *,
    page: PageParams,
    order_by: Sequence[Any],
    read: Callable[[Any], Item],
) -> Page[Item]:
    """Run a query for one page: the total count, then the ordered slice, converted."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*order_by).offset(page.offset).limit(page.limit))
    return Page[Item](
        items=[read(row) for row in rows], total=total, offset=page.offset, limit=page.limit
    )
