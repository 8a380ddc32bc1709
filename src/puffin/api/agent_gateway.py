"""The endpoints agents call: enrol, deliver event batches, keep-alive with tasks, inventory.

Agents authenticate with their id (`X-Puffin-Agent`) and credential (`Authorization:
Bearer`). The batch endpoint acknowledges only after the batch is committed, and
answers a repeated (agent, sequence) as a duplicate without storing it again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict

from puffin.auth.dependencies import SessionDep, StateDep
from puffin.core.changes import Actor, set_actor
from puffin.core.db import transaction
from puffin.core.errors import InvalidInput, Unauthenticated
from puffin.core.state import AppState
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.cache import AgentIdentity, auth_cache
from puffin.endpoint.schemas import Enrolled, EnrollmentRequest, TaskRead
from puffin.ingest.batches import decompress, parse_json, to_new_events
from puffin.ingest.decoders import Decoders
from puffin.ingest.store import PendingBatch
from puffin.ingest.writer import GroupCommitWriter
from puffin.protocol.wire import BatchAck, KeepAlive

router = APIRouter(prefix="/api/agent/v1", tags=["agent gateway"])


class KeepAliveReply(BaseModel):
    """What the server answers: configuration when it changed, and pending tasks."""

    config_version: int
    config: dict[str, Any] | None
    tasks: list[TaskRead]


class Inventory(BaseModel):
    model_config = ConfigDict(extra="allow")


def event_writer(state: AppState) -> GroupCommitWriter:
    """Return the application's group-commit writer."""
    writer: GroupCommitWriter = state.extras["event_writer"]
    return writer


def _verify(state: AppState, agent_id: uuid.UUID, credential: str) -> AgentIdentity:
    with transaction(state.session_factory) as session:
        agent = endpoint_service.authenticate_agent(
            session=session, agent_id=agent_id, credential=credential
        )
    identity = AgentIdentity(agent_id=agent.id, organisation_id=agent.organisation_id)
    auth_cache(state).remember(identity, credential)
    return identity


async def current_agent(
    request: Request,
    state: StateDep,
    x_puffin_agent: Annotated[str | None, Header()] = None,
) -> AgentIdentity:
    """Authenticate the calling agent by id and bearer credential."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential or not x_puffin_agent:
        raise Unauthenticated("send X-Puffin-Agent and 'Authorization: Bearer CREDENTIAL'")
    try:
        agent_id = uuid.UUID(x_puffin_agent)
    except ValueError as error:
        raise Unauthenticated("X-Puffin-Agent is not an agent id") from error
    cached = auth_cache(state).check(agent_id, credential.strip())
    if cached is not None:
        return cached
    return await asyncio.to_thread(_verify, state, agent_id, credential.strip())


CurrentAgent = Annotated[AgentIdentity, Depends(current_agent)]


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.post("/enroll", response_model=Enrolled, status_code=201)
def enroll(enrollment: EnrollmentRequest, request: Request, session: SessionDep) -> Enrolled:
    """Enrol an endpoint with a token; answer its id and credential."""
    set_actor(session, Actor(kind="agent", id=None, name=enrollment.name, ip=_client_ip(request)))
    return endpoint_service.enroll(session=session, request=enrollment, ip=_client_ip(request))


@router.post("/events", response_model=BatchAck)
async def deliver_events(
    request: Request,
    agent: CurrentAgent,
    state: StateDep,
    x_puffin_sequence: Annotated[int, Header(ge=0, le=2**62)],
) -> BatchAck:
    """Store a gzip-compressed JSON batch `{"events": [...]}`; acknowledge once committed."""
    body = await request.body()
    encoding = request.headers.get("content-encoding")
    events = await asyncio.to_thread(_read_batch, body, encoding, _decoders(state).decode)
    batch = PendingBatch(
        organisation_id=agent.organisation_id,
        source_id=agent.agent_id,
        sequence=x_puffin_sequence,
        events=events,
    )
    result = await asyncio.wrap_future(event_writer(state).submit(batch))
    return BatchAck(sequence=x_puffin_sequence, stored=result.stored, duplicate=result.duplicate)


def _decoders(state: AppState) -> Decoders:
    """Return the app's text-log decoders (built on first use, then shared)."""
    decoders: Decoders = state.extras.setdefault("decoders", Decoders())
    return decoders


def _read_batch(
    body: bytes, encoding: str | None, decode: Callable[[str], dict[str, Any]]
) -> list[Any]:
    document = parse_json(decompress(body, encoding))
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise InvalidInput('the batch must be a JSON object {"events": [...]}')
    return to_new_events(document["events"], decode=decode)


@router.post("/keepalive", response_model=KeepAliveReply)
def keepalive(
    report: KeepAlive, request: Request, agent: CurrentAgent, session: SessionDep
) -> KeepAliveReply:
    """Record health, store task results, and hand over configuration and new tasks."""
    set_actor(session, Actor(kind="agent", id=agent.agent_id, name=str(agent.agent_id)))
    for item in report.task_results:
        endpoint_service.finish_task(
            session=session,
            agent_id=agent.agent_id,
            task_id=item.task_id,
            ok=item.ok,
            result=item.result,
        )
    version, config = endpoint_service.effective_config(session=session, agent_id=agent.agent_id)
    endpoint_service.record_contact(
        session=session,
        agent_id=agent.agent_id,
        ip=_client_ip(request),
        health=report.health,
        events=report.events_sent,
        config_version=report.config_version,
    )
    tasks = endpoint_service.take_pending_tasks(session=session, agent_id=agent.agent_id)
    changed = version != report.config_version
    return KeepAliveReply(config_version=version, config=config if changed else None, tasks=tasks)


@router.post("/inventory", status_code=204)
def inventory(snapshot: Inventory, agent: CurrentAgent, session: SessionDep) -> None:
    """Keep the agent's latest inventory."""
    endpoint_service.store_inventory(
        session=session, agent_id=agent.agent_id, inventory=snapshot.model_dump()
    )
