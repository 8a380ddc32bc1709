"""Page rendering: the Jinja2 environment, the layout's context and the response headers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from puffin import __version__
from puffin.auth.schemas import OrganisationRead, Principal, Role
from puffin.web.security import FLASH_COOKIE, app_state, read_flash

_TEMPLATE_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class NavItem:
    """One entry of the left navigation."""

    key: str
    label: str
    path: str
    shortcut: str


NAVIGATION = (
    NavItem("dashboard", "Dashboard", "/", "d"),
    NavItem("agents", "Agents", "/agents", "g"),
    NavItem("events", "Events", "/events", "e"),
    NavItem("alerts", "Alerts", "/alerts", "a"),
    NavItem("rules", "Rules", "/rules", "r"),
    NavItem("cases", "Cases", "/cases", "c"),
    NavItem("analyzers", "Analyzers", "/analyzers", "z"),
    NavItem("intel", "Intel", "/intel", "i"),
    NavItem("admin", "Admin", "/admin", "m"),
)


@dataclass(frozen=True)
class OrganisationChoice:
    """An organisation the switcher offers."""

    id: uuid.UUID
    name: str
    role: str


@dataclass
class Console:
    """The signed-in user as every console page needs them."""

    principal: Principal
    csrf_token: str
    session_token: str
    organisation: OrganisationRead | None
    choices: list[OrganisationChoice] = field(default_factory=list)

    @property
    def is_admin(self) -> bool:
        """Return whether the user administers the current organisation."""
        has_org = self.principal.organisation_id is not None or self.principal.is_site_admin
        return has_org and self.principal.has_role(Role.ADMIN)

    @property
    def organisation_name(self) -> str:
        """Return the current organisation's name, or a placeholder."""
        return self.organisation.name if self.organisation else "no organisation"

    @property
    def can_write(self) -> bool:
        """Return whether the user may change things (analyst or above)."""
        return self.principal.has_role(Role.ANALYST)


def _format_time(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def templates() -> Jinja2Templates:
    """Return the console's template renderer (autoescaping on)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _format_time
    return Jinja2Templates(env=env)


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    console: Console | None = None,
    status_code: int = 200,
    section: str = "",
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """Render a page inside the layout; pages are never cached."""
    state = app_state(request)
    flash = read_flash(request, state)
    page: dict[str, Any] = {
        "console": console,
        "navigation": NAVIGATION,
        "section": section,
        "flash": flash,
        "version": __version__,
        "current_path": request.url.path,
        "tls_fingerprint": state.tls_fingerprint,
        "form_error": None,
        "errors": {},
        "values": {},
    }
    page.update(context or {})
    response = templates().TemplateResponse(
        request, name, page, status_code=status_code, headers=headers
    )
    response.headers["Cache-Control"] = "no-store"
    if flash is not None or FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE)
    return response
