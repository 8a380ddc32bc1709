"""Response tasks: queued by analysts, delivered with a keep-alive, results kept."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change
from puffin.core.clock import utcnow
from puffin.core.errors import Conflict, InvalidInput, NotFound
from puffin.endpoint.models import AgentTask
from puffin.endpoint.schemas import TaskAction, TaskCreate, TaskRead
from puffin.endpoint.service.agents import agent_row

MAX_BLOCK_SECONDS = 30 * 86400


def agent_spelling(action: str) -> str:
    """Return the agent's name for an action (`block_ip` is `block-ip` on the agent)."""
    return action.replace("_", "-")


def _validate_task(task_in: TaskCreate) -> dict[str, Any]:
    params = dict(task_in.parameters)
    if task_in.action in (TaskAction.BLOCK_IP, TaskAction.UNBLOCK_IP):
        try:
            params["ip"] = str(ipaddress.ip_address(str(params.get("ip", ""))))
        except ValueError as error:
            raise InvalidInput("parameters.ip must be an IPv4 or IPv6 address") from error
        timeout = params.get("timeout_seconds", 3600)
        if not isinstance(timeout, int) or not 0 < timeout <= MAX_BLOCK_SECONDS:
            raise InvalidInput(f"parameters.timeout_seconds must be 1 to {MAX_BLOCK_SECONDS}")
        params["timeout_seconds"] = timeout
    elif task_in.action == TaskAction.KILL_PROCESS:
        pid = params.get("pid")
        if not isinstance(pid, int) or pid <= 1:
            raise InvalidInput("parameters.pid must be a process id above 1")
    elif task_in.action == TaskAction.CONFIGURE:
        raise InvalidInput("configuration reaches agents through their groups")
    return params


def create_task(
    *, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID, task_in: TaskCreate
) -> TaskRead:
    """Queue an allow-listed response action for an agent that allows it."""
    agent = agent_row(session, organisation_id, agent_id)
    if agent.kind != "agent":
        raise Conflict("this source is not an agent and cannot run actions")
    parameters = _validate_task(task_in)
    wanted = agent_spelling(task_in.action)
    if agent.allowed_actions is not None and wanted not in agent.allowed_actions:
        allowed = ", ".join(agent.allowed_actions) or "none"
        raise Conflict(
            f"agent {agent.name} does not allow {wanted}; its local configuration "
            f"(response.allowed_actions) allows: {allowed}"
        )
    task = AgentTask(
        organisation_id=organisation_id,
        agent_id=agent.id,
        action=task_in.action,
        parameters=parameters,
    )
    session.add(task)
    session.flush()
    record_change(
        session,
        action="create",
        object_type="agent-task",
        object_id=task.id,
        organisation_id=organisation_id,
        summary=f"asked agent {agent.name} to {task_in.action}",
        changes={"parameters": task.parameters},
    )
    return TaskRead.model_validate(task)


def take_pending_tasks(*, session: Session, agent_id: uuid.UUID) -> list[TaskRead]:
    """Return the agent's undelivered tasks and mark them delivered."""
    rows = list(
        session.scalars(
            select(AgentTask)
            .where(AgentTask.agent_id == agent_id, AgentTask.status == "pending")
            .order_by(AgentTask.created_at)
        )
    )
    now = utcnow()
    for task in rows:
        task.status = "delivered"
        task.delivered_at = now
    session.flush()
    return [TaskRead.model_validate(t) for t in rows]


def finish_task(
    *, session: Session, agent_id: uuid.UUID, task_id: uuid.UUID, ok: bool, result: dict[str, Any]
) -> TaskRead:
    """Store what the agent reported for one of its tasks."""
    task = session.get(AgentTask, task_id)
    if task is None or task.agent_id != agent_id:
        raise NotFound(f"task {task_id} not found")
    task.status = "done" if ok else "failed"
    task.result = result
    task.finished_at = utcnow()
    session.flush()
    return TaskRead.model_validate(task)


def list_tasks(
    *, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID
) -> list[TaskRead]:
    """Return an agent's tasks, newest first."""
    agent_row(session, organisation_id, agent_id)
    rows = session.scalars(
        select(AgentTask)
        .where(AgentTask.agent_id == agent_id)
        .order_by(AgentTask.created_at.desc())
    )
    return [TaskRead.model_validate(t) for t in rows]
