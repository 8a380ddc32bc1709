"""HTML error pages for the console."""

from __future__ import annotations

from html import escape

from fastapi import Request
from fastapi.responses import HTMLResponse


def render_error(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """Return a plain error page."""
    body = f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>"
    return HTMLResponse(body, status_code=status)
