"""Agents: the registry with status and event rate, enrolment tokens, and each agent's
detail (inventory, FIM, health, events, tasks) with re-enrol, revoke and delete."""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from puffin.auth.dependencies import SessionDep
from puffin.core.errors import PuffinError
from puffin.core.pagination import PageParams
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.cache import auth_cache
from puffin.endpoint.configs import invalidate_after_commit
from puffin.endpoint.schemas import (
    AgentRead,
    AgentStatus,
    AgentUpdate,
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
    TaskCreate,
)
from puffin.ingest.store import EventQuery, EventStore
from puffin.web.agent_view import action_refusals, fim_view, health_view, inventory_view
from puffin.web.deps import (
    AdminConsole,
    AnalystConsole,
    FormDep,
    MemberConsole,
    console_router,
    organisation_of,
)
from puffin.web.forms import discard_changes, parse_form
from puffin.web.render import Console, render
from puffin.web.security import set_flash

router = console_router("/agents")

PAGE_SIZE = 50
FIM_CHANGES = 10
GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


@router.get("", response_class=HTMLResponse)
def agents_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0, text: str = ""
) -> HTMLResponse:
    """List agents and syslog sources with their status."""
    return _listing(request, console, session, offset=offset, text=text)


def _rate(agent: AgentRead) -> str:
    """Return the agent's recent events per minute as text ("—" when it is not active)."""
    if agent.status != AgentStatus.ACTIVE:
        return "—"
    return f"{agent.event_rate:.1f}/min"


def _listing(
    request: Request,
    console: Console,
    session: Session,
    *,
    offset: int = 0,
    text: str = "",
    token_form: dict[str, str] | None = None,
    token_errors: dict[str, str] | None = None,
) -> HTMLResponse:
    organisation_id = organisation_of(console)
    page = endpoint_service.list_agents(
        session=session,
        organisation_id=organisation_id,
        page=PageParams(offset=max(offset, 0), limit=PAGE_SIZE),
        text=text[:200] or None,
    )
    counts = {status.value: 0 for status in AgentStatus}
    for agent in page.items:
        counts[agent.status.value] += 1
    tokens = (
        endpoint_service.list_enrollment_tokens(session=session, organisation_id=organisation_id)
        if console.is_admin
        else []
    )
    defaults = {"default_group": "default", "expires_in_hours": "24"}
    return render(
        request,
        "agents/list.html",
        {
            "page": page,
            "counts": counts,
            "rates": {agent.id: _rate(agent) for agent in page.items},
            "tokens": tokens,
            "values": {"text": text},
            "token_values": token_form or defaults,
            "token_errors": token_errors or {},
            "query": {"text": text} if text else {},
        },
        console=console,
        section="agents",
        status_code=422 if token_errors else 200,
    )


@router.post("/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> HTMLResponse:
    """Create an enrolment token and show it once, with the enrol command line."""
    token_in, errors = parse_form(EnrollmentTokenCreate, form)
    if token_in is None:
        return _listing(request, console, session, token_form=form, token_errors=errors)
    state = request.app.state.puffin
    created = endpoint_service.create_enrollment_token(
        session=session,
        organisation_id=organisation_of(console),
        token_in=token_in,
        server_fingerprint=state.tls_fingerprint,
    )
    return _token_page(request, console, created)


def _token_page(
    request: Request, console: Console, created: EnrollmentTokenCreated, agent_name: str = ""
) -> HTMLResponse:
    """Show a new token once, with the command that enrols with it."""
    command = endpoint_service.enrol_command(
        server=f"{request.url.scheme}://{request.url.netloc}",
        token=created.token,
        fingerprint=created.server_fingerprint,
        name=agent_name or None,
    )
    return render(
        request,
        "agents/token_created.html",
        {"token": created, "command": command, "agent_name": agent_name},
        console=console,
        section="agents",
    )


@router.post("/tokens/{token_id}/revoke", response_model=None)
def revoke_token(
    request: Request, token_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> RedirectResponse:
    """Stop an enrolment token from enrolling more agents."""
    revoked = endpoint_service.revoke_enrollment_token(
        session=session, organisation_id=organisation_of(console), token_id=token_id
    )
    return _back("/agents", request, f"Token {revoked.prefix}… revoked; enrolled agents stay.")


def _back(path: str, request: Request, message: str) -> RedirectResponse:
    redirect = RedirectResponse(path, status_code=303)
    set_flash(redirect, request.app.state.puffin, message)
    return redirect


@router.get("/{agent_id}", response_class=HTMLResponse)
def agent_page(
    request: Request, agent_id: uuid.UUID, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show an agent: facts, health, inventory, recent events and tasks."""
    return _detail(request, agent_id, console, session)


def _detail(
    request: Request,
    agent_id: uuid.UUID,
    console: Console,
    session: Session,
    form_error: str | None = None,
) -> HTMLResponse:
    organisation_id = organisation_of(console)
    agent = endpoint_service.get_agent(
        session=session, organisation_id=organisation_id, agent_id=agent_id
    )
    store: EventStore = request.app.state.puffin.extras["event_store"]
    query = EventQuery(organisation_id=organisation_id, source_id=agent.id)
    events = store.search(query, limit=20)
    fim_changes = store.search(replace(query, module="fim"), limit=FIM_CHANGES)
    tasks = endpoint_service.list_tasks(
        session=session, organisation_id=organisation_id, agent_id=agent_id
    )
    return render(
        request,
        "agents/detail.html",
        {
            "agent": agent,
            "rate": _rate(agent),
            "events": events,
            "tasks": tasks,
            "inventory": inventory_view(agent.inventory),
            "fim": fim_view(agent, fim_changes),
            "health": health_view(agent),
            "refusals": action_refusals(agent),
            "form_error": form_error,
        },
        console=console,
        section="agents",
        status_code=422 if form_error else 200,
    )


@router.post("/{agent_id}/tasks", response_class=HTMLResponse, response_model=None)
def create_task(
    request: Request,
    agent_id: uuid.UUID,
    console: AnalystConsole,
    session: SessionDep,
    form: FormDep,
) -> HTMLResponse | RedirectResponse:
    """Queue a response action (block an IP, kill a process) for the agent."""
    action = form.get("action", "")
    parameters: dict[str, Any] = {}
    if action in ("block_ip", "unblock_ip"):
        parameters["ip"] = form.get("ip", "").strip()
        timeout = form.get("timeout_seconds", "").strip()
        parameters["timeout_seconds"] = int(timeout) if timeout.isdigit() else 3600
    elif action == "kill_process":
        pid = form.get("pid", "").strip()
        parameters["pid"] = int(pid) if pid.isdigit() else -1
    try:
        task_in = TaskCreate.model_validate({"action": action, "parameters": parameters})
        endpoint_service.create_task(
            session=session,
            organisation_id=organisation_of(console),
            agent_id=agent_id,
            task_in=task_in,
        )
    except (PuffinError, ValueError) as error:
        discard_changes(session)
        if isinstance(error, PuffinError) and error.status_code == 404:
            raise
        detail = error.detail if isinstance(error, PuffinError) else "choose an action"
        return _detail(request, agent_id, console, session, form_error=detail)
    message = f"Queued {action}; the agent picks it up at its next keep-alive."
    return _back(f"/agents/{agent_id}", request, message)


@router.post("/{agent_id}/revoke", response_model=None)
def revoke(
    request: Request, agent_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> RedirectResponse:
    """Refuse the agent's credential from now on."""
    endpoint_service.revoke_agent(
        session=session, organisation_id=organisation_of(console), agent_id=agent_id
    )
    auth_cache(request.app.state.puffin).forget(agent_id)
    return _back(f"/agents/{agent_id}", request, "Agent revoked; it must enrol again.")


@router.post("/{agent_id}/reenroll", response_class=HTMLResponse)
def reenroll(
    request: Request, agent_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> HTMLResponse:
    """Revoke the agent's credential and show a one-use token that enrols it again."""
    state = request.app.state.puffin
    agent = endpoint_service.get_agent(
        session=session, organisation_id=organisation_of(console), agent_id=agent_id
    )
    created = endpoint_service.reenroll_agent(
        session=session,
        organisation_id=organisation_of(console),
        agent_id=agent_id,
        server_fingerprint=state.tls_fingerprint,
    )
    auth_cache(state).forget(agent_id)
    return _token_page(request, console, created, agent_name=agent.name)


@router.post("/{agent_id}/delete", response_model=None)
def delete(
    request: Request, agent_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> RedirectResponse:
    """Remove the agent from the registry; its stored events stay until retention."""
    agent = endpoint_service.get_agent(
        session=session, organisation_id=organisation_of(console), agent_id=agent_id
    )
    endpoint_service.delete_agent(
        session=session, organisation_id=organisation_of(console), agent_id=agent_id
    )
    auth_cache(request.app.state.puffin).forget(agent_id)
    return _back("/agents", request, f"Agent {agent.name} deleted.")


@router.post("/{agent_id}/groups", response_class=HTMLResponse, response_model=None)
def set_groups(
    request: Request, agent_id: uuid.UUID, console: AdminConsole, session: SessionDep, form: FormDep
) -> HTMLResponse | RedirectResponse:
    """Put the agent in the listed groups (comma-separated), in order of precedence."""
    names = [name.strip() for name in form.get("groups", "").split(",") if name.strip()]
    bad = [name for name in names if not GROUP_NAME.fullmatch(name)]
    if bad or not names:
        reason = f"{bad[0][:40]!r} is not a group name" if bad else "name at least one group"
        message = f"{reason}: use letters, digits, dot, dash and underscore, comma-separated."
        return _detail(request, agent_id, console, session, form_error=message)
    invalidate_after_commit(request.app.state.puffin, session)
    try:
        endpoint_service.update_agent(
            session=session,
            organisation_id=organisation_of(console),
            agent_id=agent_id,
            agent_in=AgentUpdate(groups=names),
        )
    except ValidationError:
        discard_changes(session)
        return _detail(request, agent_id, console, session, form_error="at most 50 groups")
    return _back(f"/agents/{agent_id}", request, "Groups saved; the agent applies them next.")
