"""Agents: the registry with status, enrolment tokens, and each agent's detail and tasks."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from puffin.auth.dependencies import SessionDep
from puffin.core.errors import PuffinError
from puffin.core.pagination import PageParams
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.cache import auth_cache
from puffin.endpoint.schemas import AgentStatus, EnrollmentTokenCreate, TaskCreate
from puffin.ingest.store import EventQuery, EventStore
from puffin.web.deps import (
    AdminConsole,
    AnalystConsole,
    FormDep,
    MemberConsole,
    console_router,
    organisation_of,
)
from puffin.web.forms import discard_changes, parse_form
from puffin.web.render import render
from puffin.web.security import set_flash

router = console_router("/agents")

PAGE_SIZE = 50


@router.get("", response_class=HTMLResponse)
def agents_page(
    request: Request, console: MemberConsole, session: SessionDep, offset: int = 0, text: str = ""
) -> HTMLResponse:
    """List agents and syslog sources with their status."""
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
    return render(
        request,
        "agents/list.html",
        {
            "page": page,
            "counts": counts,
            "tokens": tokens,
            "values": {"text": text},
            "query": {"text": text} if text else {},
        },
        console=console,
        section="agents",
    )


@router.post("/tokens", response_class=HTMLResponse)
def create_token(
    request: Request, console: AdminConsole, session: SessionDep, form: FormDep
) -> HTMLResponse:
    """Create an enrolment token and show it once, with the enrol command line."""
    token_in, errors = parse_form(EnrollmentTokenCreate, form)
    if token_in is None:
        detail = "; ".join(f"{k}: {v}" for k, v in errors.items())
        raise _FormError(detail)
    state = request.app.state.puffin
    created = endpoint_service.create_enrollment_token(
        session=session,
        organisation_id=organisation_of(console),
        token_in=token_in,
        server_fingerprint=state.tls_fingerprint,
    )
    server_url = f"{request.url.scheme}://{request.url.netloc}"
    return render(
        request,
        "agents/token_created.html",
        {"token": created, "server_url": server_url},
        console=console,
        section="agents",
    )


class _FormError(PuffinError):
    status_code = 422
    title = "Invalid input"


@router.get("/{agent_id}", response_class=HTMLResponse)
def agent_page(
    request: Request, agent_id: uuid.UUID, console: MemberConsole, session: SessionDep
) -> HTMLResponse:
    """Show an agent: facts, health, inventory, recent events and tasks."""
    return _detail(request, agent_id, console, session)


def _detail(
    request: Request, agent_id: uuid.UUID, console: Any, session: Any, form_error: str | None = None
) -> HTMLResponse:
    organisation_id = organisation_of(console)
    agent = endpoint_service.get_agent(
        session=session, organisation_id=organisation_id, agent_id=agent_id
    )
    store: EventStore = request.app.state.puffin.extras["event_store"]
    events = store.search(EventQuery(organisation_id=organisation_id, source_id=agent.id), limit=20)
    tasks = endpoint_service.list_tasks(
        session=session, organisation_id=organisation_id, agent_id=agent_id
    )
    return render(
        request,
        "agents/detail.html",
        {"agent": agent, "events": events, "tasks": tasks, "form_error": form_error},
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
    redirect = RedirectResponse(f"/agents/{agent_id}", status_code=303)
    set_flash(
        redirect,
        request.app.state.puffin,
        f"Queued {action}; the agent picks it up at its next keep-alive.",
    )
    return redirect


@router.post("/{agent_id}/revoke", response_model=None)
def revoke(
    request: Request, agent_id: uuid.UUID, console: AdminConsole, session: SessionDep
) -> RedirectResponse:
    """Refuse the agent's credential from now on."""
    endpoint_service.revoke_agent(
        session=session, organisation_id=organisation_of(console), agent_id=agent_id
    )
    auth_cache(request.app.state.puffin).forget(agent_id)
    redirect = RedirectResponse(f"/agents/{agent_id}", status_code=303)
    set_flash(redirect, request.app.state.puffin, "Agent revoked; it must enrol again.")
    return redirect
