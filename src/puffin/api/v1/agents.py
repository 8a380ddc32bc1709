"""The agent registry as seen by analysts and admins: agents, groups, tokens and tasks."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from puffin.auth.dependencies import Analyst, OrgAdmin, Reader, SessionDep, StateDep
from puffin.core.pagination import PageParams
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.cache import auth_cache
from puffin.endpoint.configs import invalidate_after_commit
from puffin.endpoint.schemas import (
    AgentDetail,
    AgentPage,
    AgentRead,
    AgentUpdate,
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
    EnrollmentTokenRead,
    GroupRead,
    GroupWrite,
    TaskCreate,
    TaskRead,
)

router = APIRouter(tags=["agents"])


def _org(principal: Reader) -> uuid.UUID:
    assert principal.organisation_id is not None
    return principal.organisation_id


@router.get("/agents", response_model=AgentPage)
def list_agents(
    principal: Reader,
    session: SessionDep,
    page: Annotated[PageParams, Depends()],
    text: Annotated[str | None, Query(max_length=200)] = None,
) -> AgentPage:
    """List the organisation's agents and syslog sources."""
    return endpoint_service.list_agents(
        session=session, organisation_id=_org(principal), page=page, text=text
    )


@router.get("/agents/{agent_id}", response_model=AgentDetail)
def get_agent(agent_id: uuid.UUID, principal: Reader, session: SessionDep) -> AgentDetail:
    """Return one agent with its inventory and health."""
    return endpoint_service.get_agent(
        session=session, organisation_id=_org(principal), agent_id=agent_id
    )


@router.patch("/agents/{agent_id}", response_model=AgentRead)
def update_agent(
    agent_id: uuid.UUID,
    agent_in: AgentUpdate,
    principal: OrgAdmin,
    session: SessionDep,
    state: StateDep,
) -> AgentRead:
    """Change an agent's groups (admins)."""
    invalidate_after_commit(state, session)
    return endpoint_service.update_agent(
        session=session, organisation_id=_org(principal), agent_id=agent_id, agent_in=agent_in
    )


@router.post("/agents/{agent_id}/revoke", response_model=AgentRead)
def revoke_agent(
    agent_id: uuid.UUID, principal: OrgAdmin, session: SessionDep, state: StateDep
) -> AgentRead:
    """Refuse the agent's credential from now on (admins)."""
    revoked = endpoint_service.revoke_agent(
        session=session, organisation_id=_org(principal), agent_id=agent_id
    )
    auth_cache(state).forget(agent_id)
    return revoked


@router.post(
    "/agents/{agent_id}/reenroll",
    response_model=EnrollmentTokenCreated,
    status_code=status.HTTP_201_CREATED,
)
def reenroll_agent(
    agent_id: uuid.UUID, principal: OrgAdmin, session: SessionDep, state: StateDep
) -> EnrollmentTokenCreated:
    """Revoke the agent's credential; answer a one-use token that enrols it again (admins)."""
    created = endpoint_service.reenroll_agent(
        session=session,
        organisation_id=_org(principal),
        agent_id=agent_id,
        server_fingerprint=state.tls_fingerprint,
    )
    auth_cache(state).forget(agent_id)
    return created


@router.delete("/agents/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_agent(
    agent_id: uuid.UUID, principal: OrgAdmin, session: SessionDep, state: StateDep
) -> Response:
    """Remove an agent from the registry (admins)."""
    endpoint_service.delete_agent(
        session=session, organisation_id=_org(principal), agent_id=agent_id
    )
    auth_cache(state).forget(agent_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/agents/{agent_id}/tasks", response_model=list[TaskRead])
def list_tasks(agent_id: uuid.UUID, principal: Reader, session: SessionDep) -> list[TaskRead]:
    """List an agent's response tasks and their results."""
    return endpoint_service.list_tasks(
        session=session, organisation_id=_org(principal), agent_id=agent_id
    )


@router.post(
    "/agents/{agent_id}/tasks", response_model=TaskRead, status_code=status.HTTP_201_CREATED
)
def create_task(
    agent_id: uuid.UUID, task_in: TaskCreate, principal: Analyst, session: SessionDep
) -> TaskRead:
    """Ask an agent to run an allow-listed response action (block an IP, kill a process)."""
    return endpoint_service.create_task(
        session=session, organisation_id=_org(principal), agent_id=agent_id, task_in=task_in
    )


@router.get("/agent-groups", response_model=list[GroupRead])
def list_groups(principal: Reader, session: SessionDep) -> list[GroupRead]:
    """List agent groups with their configuration."""
    return endpoint_service.list_groups(session=session, organisation_id=_org(principal))


@router.put("/agent-groups", response_model=GroupRead)
def put_group(
    group_in: GroupWrite, principal: OrgAdmin, session: SessionDep, state: StateDep
) -> GroupRead:
    """Create or replace a group's configuration (admins); agents apply it without restart."""
    invalidate_after_commit(state, session)
    return endpoint_service.put_group(
        session=session, organisation_id=_org(principal), group_in=group_in
    )


@router.get("/enrollment-tokens", response_model=list[EnrollmentTokenRead])
def list_tokens(principal: OrgAdmin, session: SessionDep) -> list[EnrollmentTokenRead]:
    """List enrolment tokens (admins)."""
    return endpoint_service.list_enrollment_tokens(session=session, organisation_id=_org(principal))


@router.post(
    "/enrollment-tokens",
    response_model=EnrollmentTokenCreated,
    status_code=status.HTTP_201_CREATED,
)
def create_token(
    token_in: EnrollmentTokenCreate, principal: OrgAdmin, session: SessionDep, state: StateDep
) -> EnrollmentTokenCreated:
    """Create an enrolment token, shown once with the server certificate's fingerprint."""
    return endpoint_service.create_enrollment_token(
        session=session,
        organisation_id=_org(principal),
        token_in=token_in,
        server_fingerprint=state.tls_fingerprint,
    )


@router.delete("/enrollment-tokens/{token_id}", response_model=EnrollmentTokenRead)
def revoke_token(
    token_id: uuid.UUID, principal: OrgAdmin, session: SessionDep
) -> EnrollmentTokenRead:
    """Revoke an enrolment token (admins)."""
    return endpoint_service.revoke_enrollment_token(
        session=session, organisation_id=_org(principal), token_id=token_id
    )
