"""The dashboard and the sections that are still to come."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.alert import service as alert_service
from puffin.alert.schemas import AlertFilter
from puffin.auth.dependencies import SessionDep
from puffin.core.clock import utcnow
from puffin.core.pagination import MAX_PAGE_SIZE, PageParams
from puffin.endpoint import service as endpoint_service
from puffin.web.charts import time_bars
from puffin.web.deps import ConsoleDep, console_router
from puffin.web.render import NAVIGATION, render

router = console_router()

_COMING = {
    "cases": "Work incidents with observables, tasks and templates.",
    "analyzers": "Run Cortex-compatible analyzers and responders on observables.",
}


_WINDOWS = {"24h": (timedelta(hours=24), 48), "7d": (timedelta(days=7), 56)}


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, console: ConsoleDep, session: SessionDep, window: str = "24h"
) -> HTMLResponse:
    """Show alerts over time, by level, top rules and agents, tactics, and agent status."""
    sections = [item for item in NAVIGATION if item.key in _COMING]
    context: dict[str, Any] = {"sections": sections, "descriptions": _COMING, "stats": None}
    organisation_id = console.principal.organisation_id
    if organisation_id is not None:
        span, buckets = _WINDOWS.get(window, _WINDOWS["24h"])
        until = utcnow()
        stats = alert_service.stats(
            session=session,
            organisation_id=organisation_id,
            since=until - span,
            until=until,
            buckets=buckets,
        )
        agents = endpoint_service.list_agents(
            session=session, organisation_id=organisation_id, page=PageParams(limit=MAX_PAGE_SIZE)
        )
        newest = alert_service.list_alerts(
            session=session,
            organisation_id=organisation_id,
            alert_filter=AlertFilter(open_only=True),
            page=PageParams(limit=8),
        )
        context.update(
            stats=stats,
            chart=time_bars(stats.over_time),
            agent_status=Counter(a.status.value for a in agents.items),
            newest=newest.items,
            window=window if window in _WINDOWS else "24h",
        )
    return render(request, "dashboard.html", context, console=console, section="dashboard")


def _coming_soon(key: str) -> Callable[..., HTMLResponse]:
    label = next(item.label for item in NAVIGATION if item.key == key)

    def page(request: Request, console: ConsoleDep) -> HTMLResponse:
        return render(
            request,
            "coming_soon.html",
            {"label": label, "description": _COMING[key]},
            console=console,
            section=key,
        )

    page.__name__ = f"{key}_page"
    page.__doc__ = f"Show the {label} section's placeholder."
    return page


for _key in _COMING:
    router.add_api_route(
        f"/{_key}", _coming_soon(_key), methods=["GET"], response_class=HTMLResponse
    )
