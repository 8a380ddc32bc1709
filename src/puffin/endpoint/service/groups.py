"""Agent groups and the configuration each agent receives: its groups' merged in order.

Merging (the agent merges its local file on top the same way): mappings merge key by
key, lists are joined (each item once, in order), and any other value is replaced by
the later one. The configuration's version, as agents see it, is the SHA-256 of the
merged document, so any change an agent should apply (an edited group, a different set
of groups) changes it, and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change
from puffin.core.clock import utcnow
from puffin.core.errors import NotFound
from puffin.endpoint.models import Agent, AgentGroup
from puffin.endpoint.schemas import GroupRead, GroupWrite
from puffin.protocol.config import merge_config


def ensure_group(session: Session, organisation_id: uuid.UUID, name: str) -> AgentGroup:
    """Return the organisation's group of this name, creating it empty."""
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
    group = ensure_group(session, organisation_id, group_in.name)
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


def merged_config(session: Session, agent: Agent) -> dict[str, Any]:
    """Return the agent's groups' configurations merged in the agent's order of groups."""
    return _merged(session, agent.organisation_id, list(agent.groups or []))


def _merged(session: Session, organisation_id: uuid.UUID, names: list[str]) -> dict[str, Any]:
    rows = session.execute(
        select(AgentGroup.name, AgentGroup.config).where(
            AgentGroup.organisation_id == organisation_id, AgentGroup.name.in_(names)
        )
    )
    return merge_groups(names, {name: config for name, config in rows})


def merge_groups(names: Iterable[str], configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge the configurations of the named groups, in that order (missing ones skipped)."""
    merged: dict[str, Any] = {}
    for name in names:
        if name in configs:
            merged = merge_config(merged, configs[name])
    return merged


def effective_config(*, session: Session, agent_id: uuid.UUID) -> tuple[str, dict[str, Any]]:
    """Return (hash, configuration) for an agent: its groups' configs merged in order.

    Every keep-alive asks, so this reads two columns, not the agent's whole record.
    """
    row = session.execute(
        select(Agent.organisation_id, Agent.groups).where(Agent.id == agent_id)
    ).first()
    if row is None:
        raise NotFound(f"agent {agent_id} not found")
    merged = _merged(session, row.organisation_id, list(row.groups or []))
    return config_hash(merged), merged


def config_hash(config: Mapping[str, Any]) -> str:
    """Return the SHA-256 (hex) of a configuration's canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()
