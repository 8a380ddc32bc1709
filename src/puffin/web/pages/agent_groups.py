"""Agent groups: each group's configuration edited as JSON, delivered to its agents."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from puffin.auth.dependencies import SessionDep
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.configs import invalidate_after_commit
from puffin.endpoint.schemas import GroupWrite
from puffin.web.deps import AdminConsole, FormDep, console_router, organisation_of
from puffin.web.forms import parse_form
from puffin.web.render import Console, render
from puffin.web.security import set_flash

router = console_router("/agents/groups")

NEW_GROUP = ""


def parse_config(text: str) -> tuple[dict[str, Any] | None, str]:
    """Return the configuration object written as JSON, or an error naming its line."""
    if not text.strip():
        return {}, ""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return None, f"Not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
    if not isinstance(value, dict):
        return None, "The configuration must be a JSON object: { … }."
    return value, ""


def _page(
    request: Request,
    console: Console,
    session: Session,
    *,
    draft: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
) -> HTMLResponse:
    groups = endpoint_service.list_groups(session=session, organisation_id=organisation_of(console))
    texts = {group.name: json.dumps(group.config, indent=2, sort_keys=True) for group in groups}
    return render(
        request,
        "agents/groups.html",
        {
            "groups": groups,
            "texts": texts,
            "draft": draft or {},
            "draft_group": (draft or {}).get("original", None),
            "errors": errors or {},
        },
        console=console,
        section="agents",
        status_code=422 if errors else 200,
    )


@router.get("", response_class=HTMLResponse)
def groups_page(request: Request, console: AdminConsole, session: SessionDep) -> HTMLResponse:
    """Show every group with its configuration, ready to edit."""
    return _page(request, console, session)


@router.post("", response_class=HTMLResponse, response_model=None)
def save_group(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> HTMLResponse | RedirectResponse:
    """Create or replace a group's configuration; bad JSON is refused with its line."""
    draft = {name: form.get(name, "") for name in ("name", "description", "config")}
    draft["original"] = form.get("original", NEW_GROUP)
    config, problem = parse_config(draft["config"])
    group_in, errors = parse_form(
        GroupWrite, {"name": draft["name"].strip(), "description": draft["description"]}
    )
    if problem:
        errors["config"] = problem
    if group_in is None or config is None or errors:
        return _page(request, console, session, draft=draft, errors=errors)
    invalidate_after_commit(request.app.state.puffin, session)
    saved = endpoint_service.put_group(
        session=session,
        organisation_id=organisation_of(console),
        group_in=group_in.model_copy(update={"config": config}),
    )
    redirect = RedirectResponse("/agents/groups", status_code=303)
    message = f"Group {saved.name} saved (configuration version {saved.config_version})."
    set_flash(redirect, request.app.state.puffin, message)
    return redirect
