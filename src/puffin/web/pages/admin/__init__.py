"""Admin pages: organisations, users, API keys, the audit trail and the server."""

from __future__ import annotations

from fastapi import APIRouter

from puffin.web.pages.admin import api_keys, audit, organisations, overview, users

router = APIRouter()
for _module in (overview, organisations, users, api_keys, audit):
    router.include_router(_module.router)
