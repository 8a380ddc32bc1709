"""Enrolment, agent credentials, what agents report, and the registry analysts see."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change, revoke_once
from puffin.core.clock import utcnow
from puffin.core.crypto import hash_token, random_token, tokens_equal
from puffin.core.errors import Conflict, NotFound, Unauthenticated
from puffin.core.pagination import PageParams, paginate
from puffin.endpoint.models import Agent, EnrollmentToken
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
)
from puffin.endpoint.service.groups import config_hash, ensure_group, merged_config
from puffin.endpoint.service.tokens import create_enrollment_token, usable_token
from puffin.protocol.wire import MAX_SEQUENCE, SEQUENCE_EPOCH

DISCONNECTED_AFTER = timedelta(minutes=2)
RATE_WINDOW = timedelta(minutes=5)
REENROL_TOKEN_HOURS = 24


# --- enrolment and credentials -------------------------------------------------------


def _agent_for_token(session: Session, token: EnrollmentToken, name: str) -> Agent | None:
    """Return the agent this enrolment replaces: the token's own, or one of the same name."""
    if token.agent_id is None:
        return session.scalar(
            select(Agent).where(Agent.organisation_id == token.organisation_id, Agent.name == name)
        )
    agent = session.get(Agent, token.agent_id)
    if agent is None:
        raise Unauthenticated("the agent this token re-enrols no longer exists")
    if agent.name != name:
        raise Conflict(f"this token enrols agent {agent.name!r} again; use --name {agent.name}")
    return agent


def _next_enrolment(agent: Agent) -> int:
    """Count one more enrolment and return the first batch sequence number it may use."""
    agent.enrolments = (agent.enrolments or 0) + 1
    start = (agent.enrolments - 1) * SEQUENCE_EPOCH + 1
    if start + SEQUENCE_EPOCH > MAX_SEQUENCE:
        raise Conflict(f"agent {agent.name} enrolled too often; delete it and enrol it anew")
    return start


def enroll(*, session: Session, request: EnrollmentRequest, ip: str | None) -> Enrolled:
    """Enrol an endpoint: a new agent, or a new credential and sequence block for one."""
    token = usable_token(session, request.token)
    agent = _agent_for_token(session, token, request.name)
    action = "re-enroll" if agent is not None else "enroll"
    if agent is None:
        agent = Agent(
            organisation_id=token.organisation_id,
            name=request.name,
            groups=[token.default_group],
            enrolments=0,
        )
        session.add(agent)
    credential = random_token(32)
    sequence_start = _next_enrolment(agent)
    agent.hostname = request.hostname
    agent.os_name = request.os_name
    agent.os_version = request.os_version
    agent.agent_version = request.agent_version
    agent.ip = ip
    agent.credential_hash = hash_token(credential)
    agent.revoked_at = None
    agent.enrolled_at = utcnow()
    agent.config_applied = ""
    agent.allowed_actions = None
    token.uses += 1
    ensure_group(session, token.organisation_id, token.default_group)
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
        sequence_start=sequence_start,
    )


@dataclass(frozen=True)
class AuthenticatedAgent:
    """An agent whose credential was checked."""

    id: uuid.UUID
    organisation_id: uuid.UUID


def authenticate_agent(
    *, session: Session, agent_id: uuid.UUID, credential: str
) -> AuthenticatedAgent:
    """Return the agent if the credential is its own and it is not revoked.

    Reads the three columns it needs: agents call in often, their records can be large.
    """
    row = session.execute(
        select(Agent.organisation_id, Agent.credential_hash, Agent.revoked_at).where(
            Agent.id == agent_id
        )
    ).first()
    digest = hash_token(credential)
    if row is None or not tokens_equal(row.credential_hash, digest):
        raise Unauthenticated("unknown agent or wrong credential")
    if row.revoked_at is not None:
        raise Unauthenticated("this agent was revoked; enrol it again")
    return AuthenticatedAgent(id=agent_id, organisation_id=row.organisation_id)


@dataclass(frozen=True)
class Contact:
    """One call-in of an agent: when, from where, and what it reported."""

    seen_at: datetime
    ip: str | None = None
    health: dict[str, Any] | None = None
    events: int = 0
    config_applied: str | None = None
    allowed_actions: list[str] | None = None


def record_contact(
    *,
    session: Session,
    agent_id: uuid.UUID,
    ip: str | None,
    health: dict[str, Any] | None = None,
    events: int = 0,
    config_applied: str | None = None,
    allowed_actions: list[str] | None = None,
) -> None:
    """Note that the agent called in, with its health, delivered events and allowed actions."""
    contact = Contact(
        seen_at=utcnow(),
        ip=ip,
        health=health,
        events=events,
        config_applied=config_applied,
        allowed_actions=allowed_actions,
    )
    if not record_contacts(session=session, contacts=[(agent_id, contact)]):
        raise NotFound(f"agent {agent_id} not found")


def record_contacts(*, session: Session, contacts: Sequence[tuple[uuid.UUID, Contact]]) -> int:
    """Apply call-ins noted earlier, oldest first, in the caller's transaction.

    Agents deleted since are skipped; returns how many contacts were applied.
    """
    ids = list({agent_id for agent_id, _ in contacts})
    agents: dict[uuid.UUID, Agent] = {}
    for start in range(0, len(ids), 500):  # one query per chunk, not one per agent
        chunk = ids[start : start + 500]
        agents.update((a.id, a) for a in session.scalars(select(Agent).where(Agent.id.in_(chunk))))
    applied = 0
    for agent_id, contact in sorted(contacts, key=lambda item: item[1].seen_at):
        agent = agents.get(agent_id)
        if agent is None:
            continue
        _apply_contact(agent, contact)
        applied += 1
    session.flush()
    return applied


def _apply_contact(agent: Agent, contact: Contact) -> None:
    _count_events(agent, contact.events, contact.seen_at)
    if contact.ip:
        agent.ip = contact.ip
    if contact.health is not None:
        agent.health = contact.health
    if contact.config_applied is not None:
        agent.config_applied = contact.config_applied
    if contact.allowed_actions is not None:
        agent.allowed_actions = sorted({a.replace("_", "-") for a in contact.allowed_actions})


def record_deliveries(*, session: Session, events: Mapping[uuid.UUID, int]) -> None:
    """Note that these sources (syslog senders) just delivered so many events each."""
    for source_id, count in events.items():
        agent = session.get(Agent, source_id)
        if agent is not None:
            _count_events(agent, count)
    session.flush()


def _count_events(agent: Agent, events: int, now: datetime | None = None) -> None:
    """Note a contact with `events` new events: last seen `now`, total and rate updated.

    The rate (events per minute) is a moving average that forgets with a time constant of
    RATE_WINDOW, so it follows an agent's recent volume however often it calls in.
    """
    now = now or utcnow()
    if agent.last_seen_at is not None:
        elapsed = max((now - agent.last_seen_at).total_seconds(), 1.0)
        weight = 1 - math.exp(-elapsed / RATE_WINDOW.total_seconds())
        agent.event_rate = (agent.event_rate or 0.0) * (1 - weight) + weight * (
            events * 60 / elapsed
        )
    agent.events_received = (agent.events_received or 0) + events
    if agent.last_seen_at is None or now > agent.last_seen_at:
        agent.last_seen_at = now


def store_inventory(
    *,
    session: Session,
    agent_id: uuid.UUID,
    inventory: dict[str, Any],
    taken_at: datetime | None = None,
) -> None:
    """Keep the agent's latest inventory snapshot."""
    agent = session.get(Agent, agent_id)
    if agent is None:
        raise NotFound(f"agent {agent_id} not found")
    agent.inventory = inventory
    agent.inventory_at = taken_at or utcnow()
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


def agent_row(session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> Agent:
    """Return the organisation's agent row, or raise NotFound."""
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
    """Return one agent of this organisation with its inventory and configuration state."""
    agent = agent_row(session, organisation_id, agent_id)
    detail = AgentDetail.model_validate(agent)
    current = config_hash(merged_config(session, agent)) if agent.kind == "agent" else ""
    return detail.model_copy(update={"status": status_of(agent), "config_current": current})


def update_agent(
    *, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID, agent_in: AgentUpdate
) -> AgentRead:
    """Change an agent's groups."""
    agent = agent_row(session, organisation_id, agent_id)
    if agent_in.groups is not None:
        before = list(agent.groups)
        for group in agent_in.groups:
            ensure_group(session, organisation_id, group)
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
    agent = agent_row(session, organisation_id, agent_id)
    revoke_once(
        session,
        agent,
        object_type="agent",
        organisation_id=organisation_id,
        summary=f"revoked agent {agent.name}",
    )
    return _agent_read(agent)


def reenroll_agent(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    agent_id: uuid.UUID,
    server_fingerprint: str | None,
) -> EnrollmentTokenCreated:
    """Revoke the agent's credential and return a one-use token that enrols it again."""
    agent = agent_row(session, organisation_id, agent_id)
    if agent.kind != "agent":
        raise Conflict("this source is not an agent and cannot enrol")
    revoke_agent(session=session, organisation_id=organisation_id, agent_id=agent_id)
    token_in = EnrollmentTokenCreate(
        name=f"re-enrol {agent.name}"[:200],
        expires_in_hours=REENROL_TOKEN_HOURS,
        max_uses=1,
        default_group=(agent.groups or ["default"])[0],
    )
    return create_enrollment_token(
        session=session,
        organisation_id=organisation_id,
        token_in=token_in,
        server_fingerprint=server_fingerprint,
        agent_id=agent.id,
    )


def delete_agent(*, session: Session, organisation_id: uuid.UUID, agent_id: uuid.UUID) -> None:
    """Remove an agent from the registry (its stored events stay until retention)."""
    agent = agent_row(session, organisation_id, agent_id)
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
