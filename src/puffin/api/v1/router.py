"""All routes of `/api/v1`."""

from __future__ import annotations

from fastapi import APIRouter

from puffin.api.v1 import (
    agents,
    alerts,
    apikeys,
    audit,
    events,
    me,
    misp_fixer,
    organisations,
    rules,
    users,
)

router = APIRouter(prefix="/api/v1")
for module in (
    me,
    organisations,
    users,
    apikeys,
    audit,
    agents,
    alerts,
    events,
    rules,
    misp_fixer,
):
    router.include_router(module.router)
