"""Console pages: sign-in, the shell with its navigation, and the admin area."""

from __future__ import annotations

from fastapi import APIRouter

from puffin.web import auth
from puffin.web.pages import admin, agent_groups, agents, alerts, events, intel, rules, shell

router = APIRouter(include_in_schema=False)
router.include_router(auth.router)
router.include_router(shell.router)
router.include_router(admin.router)
router.include_router(alerts.router)
router.include_router(events.router)
router.include_router(rules.router)
router.include_router(intel.router)
router.include_router(agent_groups.router)  # before /agents/{agent_id}
router.include_router(agents.router)
