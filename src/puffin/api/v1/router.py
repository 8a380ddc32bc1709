"""All routes of `/api/v1`."""

from __future__ import annotations

from fastapi import APIRouter

from puffin.api.v1 import agents, alerts, apikeys, audit, events, me, organisations, rules, users

router = APIRouter(prefix="/api/v1")
for module in (me, organisations, users, apikeys, audit, agents, alerts, events, rules):
    router.include_router(module.router)
