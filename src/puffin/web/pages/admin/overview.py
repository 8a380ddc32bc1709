"""The Admin area's start page with the server panel."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.web.deps import ConsoleDep, console_router
from puffin.web.render import render

router = console_router("/admin")


@router.get("", response_class=HTMLResponse)
def admin_home(request: Request, console: ConsoleDep) -> HTMLResponse:
    """Show the admin areas this user may use, and the server's certificate."""
    return render(request, "admin/index.html", console=console, section="admin")


@router.get("/server", response_class=HTMLResponse)
def server(request: Request, console: ConsoleDep) -> HTMLResponse:
    """Show how to reach and trust this server."""
    return render(request, "admin/server.html", console=console, section="admin")
