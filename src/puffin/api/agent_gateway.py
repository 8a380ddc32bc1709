"""The endpoints agents call: enrol, deliver event batches, keep-alive with tasks, inventory.

Agents authenticate with their id (`X-Puffin-Agent`) and credential (`Authorization:
Bearer`). The batch endpoint acknowledges only after the batch is committed, and
answers a repeated (agent, sequence) as a duplicate without storing it again. An
inventory snapshot in a batch is also kept on the agent's record, for the console.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError

from puffin.auth.dependencies import SessionDep, StateDep
from puffin.core.changes import Actor, set_actor
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.errors import InvalidInput, PuffinError, Unauthenticated
from puffin.core.state import AppState
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.cache import AgentIdentity, auth_cache
from puffin.endpoint.configs import config_snapshot, invalidate_after_commit
from puffin.endpoint.contacts import contact_book
from puffin.endpoint.schemas import Enrolled, EnrollmentRequest, TaskRead
from puffin.ingest.batches import decompress, parse_json, to_new_events
from puffin.ingest.decoders import Decoders
from puffin.ingest.store import NewEvent, PendingBatch
from puffin.ingest.writer import GroupCommitWriter
from puffin.protocol.wire import BatchAck, KeepAlive

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/api/agent/v1", tags=["agent gateway"])

INVENTORY_TITLE = "Inventory"  # the snapshot event of the agent's inventory collector


class KeepAliveReply(BaseModel):
    """What the server answers: configuration when its hash changed, and pending tasks."""

    config_hash: str
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
def enroll(
    enrollment: EnrollmentRequest, request: Request, session: SessionDep, state: StateDep
) -> Enrolled:
    """Enrol an endpoint with a token; answer its id and credential."""
    invalidate_after_commit(state, session)  # a re-enrolment may change the agent's groups
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
    snapshot = None if result.duplicate else latest_inventory(events)
    if snapshot is not None:
        await asyncio.to_thread(_keep_inventory, state, agent, snapshot)
    return BatchAck(sequence=x_puffin_sequence, stored=result.stored, duplicate=result.duplicate)


def latest_inventory(events: list[NewEvent]) -> tuple[dict[str, Any], datetime | None] | None:
    """Return the last inventory snapshot in a batch (and when it was taken), if any."""
    for event in reversed(events):
        inventory = event.data.get("inventory")
        snapshot = event.module == "inventory" and event.data.get("title") == INVENTORY_TITLE
        if snapshot and isinstance(inventory, dict):
            return inventory, event.event_time
    return None


def _keep_inventory(
    state: AppState, agent: AgentIdentity, snapshot: tuple[dict[str, Any], datetime | None]
) -> None:
    """Store the snapshot on the agent record; the batch is stored whatever happens here."""
    try:
        with transaction(state.session_factory) as session:
            endpoint_service.store_inventory(
                session=session,
                agent_id=agent.agent_id,
                inventory=snapshot[0],
                taken_at=snapshot[1],
            )
    except (PuffinError, SQLAlchemyError):
        logger.exception("could not keep the inventory of agent %s", agent.agent_id)


def _decoders(state: AppState) -> Decoders:
    """Return the app's text-log decoders (built on first use, then shared)."""
    decoders: Decoders = state.extras.setdefault("decoders", Decoders())
    return decoders


def _read_batch(
    body: bytes, encoding: str | None, decode: Callable[[str], dict[str, Any]]
) -> list[NewEvent]:
    document = parse_json(decompress(body, encoding))
    if not isinstance(document, dict) or not isinstance(document.get("events"), list):
        raise InvalidInput('the batch must be a JSON object {"events": [...]}')
    return to_new_events(document["events"], decode=decode)


@router.post("/keepalive", response_model=KeepAliveReply)
def keepalive(
    report: KeepAlive, request: Request, agent: CurrentAgent, state: StateDep
) -> KeepAliveReply:
    """Record health, store task results, and hand over configuration and new tasks.

    Only task results and handed-over tasks are written here; the call-in itself (last
    seen, health, events sent, configuration applied, allowed actions) is noted in memory
    and written with the others' within `contacts.FLUSH_SECONDS` (see `flush_contacts`).
    The transaction ends in the handler's own thread: a request-scoped session would give
    its connection back only in a teardown that waits for a free threadpool thread, and
    with every thread waiting for a connection, none would come back.
    """
    with transaction(state.session_factory) as session:
        set_actor(session, Actor(kind="agent", id=agent.agent_id, name=str(agent.agent_id)))
        for item in report.task_results:
            endpoint_service.finish_task(
                session=session,
                agent_id=agent.agent_id,
                task_id=item.task_id,
                ok=item.ok,
                result=item.result,
            )
        digest, config = config_snapshot(state).of(session, agent.agent_id)
        tasks = endpoint_service.take_pending_tasks(session=session, agent_id=agent.agent_id)
    contact_book(state).note(
        agent.agent_id,
        endpoint_service.Contact(
            seen_at=utcnow(),
            ip=_client_ip(request),
            health=report.health,
            events=report.events_sent,
            config_applied=report.config_hash,
            allowed_actions=report.allowed_actions,
        ),
    )
    changed = digest != report.config_hash
    return KeepAliveReply(config_hash=digest, config=config if changed else None, tasks=tasks)


def flush_contacts(state: AppState) -> int:
    """Write the agents' call-ins noted so far now, instead of with the next periodic flush.

    The console and the API read the agent rows; whoever needs a keep-alive to show there
    at once (a test, a command) calls this. Returns how many call-ins were written.
    """
    return contact_book(state).flush()


@router.post("/inventory", status_code=204)
def inventory(snapshot: Inventory, agent: CurrentAgent, session: SessionDep) -> None:
    """Keep the agent's latest inventory."""
    endpoint_service.store_inventory(
        session=session, agent_id=agent.agent_id, inventory=snapshot.model_dump()
    )
