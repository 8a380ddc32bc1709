"""The dashboard and the sections that are still to come."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.web.deps import ConsoleDep, console_router
from puffin.web.render import NAVIGATION, render

router = console_router()

_COMING = {
    "rules": "Browse, test and switch the Sigma rules that run on your events.",
    "cases": "Work incidents with observables, tasks and templates.",
    "analyzers": "Run Cortex-compatible analyzers and responders on observables.",
    "intel": "Sync indicators from MISP and look them up in your events.",
}


@router.get("/", response_class=HTMLResponse)
def dashboard(request: Request, console: ConsoleDep) -> HTMLResponse:
    """Show the start page."""
    sections = [item for item in NAVIGATION if item.key in _COMING]
    return render(
        request,
        "dashboard.html",
        {"sections": sections, "descriptions": _COMING},
        console=console,
        section="dashboard",
    )


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
