"""HTML error pages for the console, drawn inside the layout."""

from __future__ import annotations

import logging
from html import escape
from http import HTTPStatus

from fastapi import Request
from fastapi.responses import HTMLResponse

from puffin.web.render import Console, render

logger = logging.getLogger(__name__)


def render_error(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """Return an error page; falls back to plain HTML if the layout itself fails."""
    console = getattr(request.state, "console", None)
    if title == "Error" and status in HTTPStatus._value2member_map_:
        title = HTTPStatus(status).phrase
    try:
        return render(
            request,
            "error.html",
            {"status": status, "title": title, "detail": detail},
            console=console if isinstance(console, Console) else None,
            status_code=status,
        )
    except Exception:  # an error page must never fail in turn
        logger.exception("could not render the error page")
        body = f"<h1>{escape(title)}</h1><p>{escape(detail)}</p>"
        return HTMLResponse(body, status_code=status)
