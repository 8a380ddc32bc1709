"""The agent registry: enrolment tokens, enrolment, credentials, groups, status and tasks."""

from __future__ import annotations

import ipaddress
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change
from puffin.core.clock import utcnow
from puffin.core.crypto import hash_token, random_token, tokens_equal
from puffin.core.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from puffin.core.pagination import PageParams, paginate
from puffin.endpoint.models import Agent, AgentGroup, AgentTask, EnrollmentToken
from puffin.endpoint.schemas import (
    AgentDetail,
    AgentPage,
    AgentRead,
    AgentStatus,
    AgentUpdate,
    Enrolled,
    EnrollmentRequest,
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
    EnrollmentTokenRead,
    GroupRead,
    GroupWrite,
    TaskAction,
    TaskCreate,
    TaskRead,
)

TOKEN_PREFIX = "pfe_"  # noqa: S105 - a marker, not a secret
DISCONNECTED_AFTER = timedelta(minutes=2)


# --- enrolment tokens ----------------------------------------------------------------


def create_enrollment_token(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    token_in: EnrollmentTokenCreate,
    server_fingerprint: str | None,
) -> EnrollmentTokenCreated:
    """Create an enrolment token; the token itself is returned only now."""
    secret = f"{TOKEN_PREFIX}{random_token(24)}"
    row = EnrollmentToken(
        organisation_id=organisation_id,
        name=token_in.name,
        prefix=secret[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + 8],
        token_hash=hash_token(secret),
        default_group=token_in.default_group,
        max_uses=token_in.max_uses,
        expires_at=utcnow() + timedelta(hours=token_in.expires_in_hours),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        action="create",
        object_type="enrollment-token",
        object_id=row.id,
        organisation_id=organisation_id,
        summary=f"created enrolment token {row.prefix}… for group {row.default_group}",
        changes=token_in.model_dump(),
    )
    read = EnrollmentTokenRead.model_validate(row)
    return EnrollmentTokenCreated(
        **read.model_dump(), token=secret, server_fingerprint=server_fingerprint
    )


def list_enrollment_tokens(
    *, session: Session, organisation_id: uuid.UUID
) -> list[EnrollmentTokenRead]:
    """Return the organisation's enrolment tokens, newest first."""
    rows = session.scalars(
        select(EnrollmentToken)
        .where(EnrollmentToken.organisation_id == organisation_id)
        .order_by(EnrollmentToken.created_at.desc())
    )
    return [EnrollmentTokenRead.model_validate(r) for r in rows]


def revoke_enrollment_token(
    *, session: Session, organisation_id: uuid.UUID, token_id: uuid.UUID
) -> EnrollmentTokenRead:
    """Stop an enrolment token from being used again."""
    row = session.get(EnrollmentToken, token_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"enrolment token {token_id} not found")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
        record_change(
            session,
            action="revoke",
            object_type="enrollment-token",
            object_id=row.id,
            organisation_id=organisation_id,
            summary=f"revoked enrolment token {row.prefix}…",
        )
    return EnrollmentTokenRead.model_validate(row)


def _usable_token(session: Session, token: str) -> EnrollmentToken:
    digest = hash_token(token)
    row = session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == digest))
    if row is None or not tokens_equal(row.token_hash, digest):
        raise Unauthenticated("unknown enrolment token")
    if row.revoked_at is not None:
        raise Unauthenticated("the enrolment token was revoked")
    if row.expires_at <= utcnow():
        raise Unauthenticated("the enrolment token has expired; ask for a new one")
    if row.max_uses is not None and row.uses >= row.max_uses:
        raise Unauthenticated("the enrolment token has been used up")
    return row


# --- enrolment and credentials -------------------------------------------------------


def enroll(*, session: Session, request: EnrollmentRequest, ip: str | None) -> Enrolled:
    """Enrol an endpoint: a new agent, or a new credential for one of the same name."""
    token = _usable_token(session, request.token)
    agent = session.scalar(
        select(Agent).where(
            Agent.organisation_id == token.organisation_id, Agent.name == request.name
        )
    )
    credential = random_token(32)
    action = "re-enroll" if agent is not None else "enroll"
    if agent is None:
        agent = Agent(
            organisation_id=token.organisation_id, name=request.name, groups=[token.default_group]
        )
        session.add(agent)
    agent.hostname = request.hostname
    agent.os_name = request.os_name
    agent.os_version = request.os_version
    agent.agent_version = request.agent_version
    agent.ip = ip
    agent.credential_hash = hash_token(credential)
    agent.revoked_at = None
    agent.enrolled_at = utcnow()
    token.uses += 1
    _ensure_group(session, token.organisation_id, token.default_group)
    session.flush()
    record_change(
        session,
        action=action,
        object_type="agent",
        object_id=agent.id,
        organisation_id=agent.organisation_id,
        summary=f"agent {agent.name} enrolled with token {token.prefix}…",
        changes={"hostname": request.hostname, "os": request.os_name, "ip": ip},
    )
    return Enrolled(
        agent_id=agent.id,
        organisation_id=agent.organisation_id,
        credential=credential,
        groups=list(agent.groups),
    )


def authenticate_agent(*, session: Session, agent_id: uuid.UUID, credential: str) -> AgentRead:
    """Return the agent if the credential is its own and it is not revoked."""
    agent = session.get(Agent, agent_id)
    digest = hash_token(credential)
    if agent is None or not tokens_equal(agent.credential_hash, digest):
        raise Unauthenticated("unknown agent or wrong credential")
    if agent.revoked_at is not None:
        raise Unauthenticated("this agent was revoked; enrol it again")
    return _agent_read(agent)


def record_contact(
    *,
    session: Session,
    agent_id: uuid.UUID,
    ip: str | None,
    health: dict[str, Any] | None = None,
    events: int = 0,
    config_version: int | None = None,
) -> None:
    """Note that the agent called in, with its health counters and delivered event count."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    agent.last_seen_at = utcnow()
    if ip:
        agent.ip = ip
    if health is not None:
        agent.health = health
    if events:
        agent.events_received = (agent.events_received or 0) + events
    if config_version is not None:
        agent.config_version_applied = config_version
    session.flush()


def store_inventory(*, session: Session, agent_id: uuid.UUID, inventory: dict[str, Any]) -> None:
    """Keep the agent's latest inventory snapshot."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    agent.inventory = inventory
    session.flush()


# --- the registry --------------------------------------------------------------------


def status_of(agent: Agent | AgentRead, now: datetime | None = None) -> AgentStatus:
    """Derive an agent's status from its revocation and last contact."""
    if agent.revoked_at is not None:
        return AgentStatus.REVOKED
    if agent.last_seen_at is None:
        return AgentStatus.NEVER_CONNECTED
    if (now or utcnow()) - agent.last_seen_at > DISCONNECTED_AFTER:
        return AgentStatus.DISCONNECTED
    return AgentStatus.ACTIVE


def _agent_read(agent: Agent) -> AgentRead:
    read = AgentRead.model_validate(agent)
    return read.model_copy(update={"status": status_of(agent)})


def source_name(*, session: Session, source_id: uuid.UUID) -> str:
    """Return the name of an agent or syslog source, or "" when it is gone."""
    agent = session.get(Agent, source_id)
    return agent.name if agent is not None else ""


def _agent(session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> Agent:
    agent = session.get(Agent, agent_id)
    if agent is None or agent.organisation_id != organisation_id:
        raise NotFound(f"agent {agent_id} not found")
    return agent


def list_agents(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    page: PageParams,
    text: str | None = None,
) -> AgentPage:
    """Return the organisation's agents by name."""
    query = select(Agent).where(Agent.organisation_id == organisation_id)
    if text:
        pattern = f"%{text.lower()}%"
        query = query.where(
            func.lower(Agent.name).like(pattern) | func.lower(Agent.hostname).like(pattern)
        )
    return paginate(session, query, page=page, order_by=(Agent.name,), read=_agent_read)


def get_agent(*, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> AgentDetail:
    """Return one agent of this organisation with its inventory."""
    agent = _agent(session, organisation_id, agent_id)
    detail = AgentDetail.model_validate(agent)
    return detail.model_copy(update={"status": status_of(agent)})


def update_agent(
    *, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID, agent_in: AgentUpdate
) -> AgentRead:
    """Change an agent's groups."""
    agent = _agent(session, organisation_id, agent_id)
    if agent_in.groups is not None:
        before = list(agent.groups)
        for group in agent_in.groups:
            _ensure_group(session, organisation_id, group)
        agent.groups = list(dict.fromkeys(agent_in.groups))
        session.flush()
        record_change(
            session,
            action="update",
            object_type="agent",
            object_id=agent.id,
            organisation_id=organisation_id,
            summary=f"changed the groups of agent {agent.name}",
            changes={"groups": [before, agent.groups]},
        )
    return _agent_read(agent)


def revoke_agent(*, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> AgentRead:
    """Refuse the agent's credential from now on."""
    agent = _agent(session, organisation_id, agent_id)
    if agent.revoked_at is None:
        agent.revoked_at = utcnow()
        session.flush()
        record_change(
            session,
            action="revoke",
            object_type="agent",
            object_id=agent.id,
            organisation_id=organisation_id,
            summary=f"revoked agent {agent.name}",
        )
    return _agent_read(agent)


def delete_agent(*, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    """Remove an agent from the registry (its stored events stay until retention)."""
    agent = _agent(session, organisation_id, agent_id)
    session.delete(agent)
    session.flush()
    record_change(
        session,
        action="delete",
        object_type="agent",
        object_id=agent_id,
        organisation_id=organisation_id,
        summary=f"deleted agent {agent.name}",
    )


def source_for(
    *, session: Session, organisation_id: uuid.UUID, name: str, kind: str, ip: str | None
) -> uuid.UUID:
    """Return the registry id of a non-agent source (a syslog sender), creating it."""
    agent = session.scalar(
        select(Agent).where(Agent.organisation_id == organisation_id, Agent.name == name)
    )
    if agent is None:
        agent = Agent(organisation_id=organisation_id, name=name, kind=kind, ip=ip, groups=[])
        session.add(agent)
        session.flush()
    agent.last_seen_at = utcnow()
    return agent.id


# --- groups and configuration --------------------------------------------------------


def _ensure_group(session: Session, organisation_id: uuid.UUID, name: str) -> AgentGroup:
    group = session.scalar(
        select(AgentGroup).where(
            AgentGroup.organisation_id == organisation_id, AgentGroup.name == name
        )
    )
    if group is None:
        group = AgentGroup(organisation_id=organisation_id, name=name, config={})
        session.add(group)
        session.flush()
    return group


def list_groups(*, session: Session, organisation_id: uuid.UUID) -> list[GroupRead]:
    """Return the organisation's agent groups."""
    rows = session.scalars(
        select(AgentGroup)
        .where(AgentGroup.organisation_id == organisation_id)
        .order_by(AgentGroup.name)
    )
    return [GroupRead.model_validate(g) for g in rows]


def put_group(*, session: Session, organisation_id: uuid.UUID, group_in: GroupWrite) -> GroupRead:
    """Create or replace a group's configuration; agents pick it up at their next call."""
    group = _ensure_group(session, organisation_id, group_in.name)
    before = dict(group.config)
    group.description = group_in.description
    if group_in.config != group.config:
        group.config = group_in.config
        group.config_version = (group.config_version or 0) + 1
    group.updated_at = utcnow()
    session.flush()
    record_change(
        session,
        action="configure",
        object_type="agent-group",
        object_id=group.id,
        organisation_id=organisation_id,
        summary=f"set the configuration of group {group.name} (version {group.config_version})",
        changes={"config": [before, group.config]} if before != group.config else {},
    )
    return GroupRead.model_validate(group)


def effective_config(*, session: Session, agent_id: uuid.UUID) -> tuple[int, dict[str, Any]]:
    """Return (version, configuration) for an agent: its groups' configs merged in order."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    groups = {
        g.name: g
        for g in session.scalars(
            select(AgentGroup).where(
                AgentGroup.organisation_id == agent.organisation_id,
                AgentGroup.name.in_(agent.groups or []),
            )
        )
    }
    merged: dict[str, Any] = {}
    version = 0
    for name in agent.groups or []:
        group = groups.get(name)
        if group is None:
            continue
        merged = _merge(merged, group.config)
        version += group.config_version
    return version, merged


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = merged[key] + [v for v in value if v not in merged[key]]
        else:
            merged[key] = value
    return merged


# --- tasks ---------------------------------------------------------------------------


def _validate_task(task_in: TaskCreate) -> dict[str, Any]:
    params = dict(task_in.parameters)
    if task_in.action in (TaskAction.BLOCK_IP, TaskAction.UNBLOCK_IP):
        try:
            params["ip"] = str(ipaddress.ip_address(str(params.get("ip", ""))))
        except ValueError as error:
            raise InvalidInput("parameters.ip must be an IPv4 or IPv6 address") from error
        timeout = params.get("timeout_seconds", 3600)
        if not isinstance(timeout, int) or not 0 < timeout <= 30 * 86400:
            raise InvalidInput("parameters.timeout_seconds must be 1 to 2592000")
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
    """Queue an allow-listed response action for an agent."""
    agent = _agent(session, organisation_id, agent_id)
    if agent.kind != "agent":
        raise Conflict("this source is not an agent and cannot run actions")
    task = AgentTask(
        organisation_id=organisation_id,
        agent_id=agent.id,
        action=task_in.action,
        parameters=_validate_task(task_in),
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
    _agent(session, organisation_id, agent_id)
    rows = session.scalars(
        select(AgentTask)
        .where(AgentTask.agent_id == agent_id)
        .order_by(AgentTask.created_at.desc())
    )
    return [TaskRead.model_validate(t) for t in rows]
