"""Background work the server runs beside HTTP: syslog listeners and event retention."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from puffin.alert.outputs import alert_outputs
from puffin.auth import service as auth_service
from puffin.core.changes import Actor, set_actor
from puffin.core.db import transaction
from puffin.core.settings import settings_json
from puffin.core.state import AppState
from puffin.core.tls import ensure_certificate
from puffin.detection.registry import rule_registry
from puffin.endpoint import service as endpoint_service
from puffin.ingest.store import EventStore
from puffin.ingest.syslog import SyslogReceiver, plain_decode
from puffin.worker.detection import (
    AlertPolicy,
    DetectionWorker,
    OrganisationDetectors,
    RulePolicies,
)
from puffin.worker.detection_process import DetectionProcess

logger = logging.getLogger(__name__)

RETENTION_INTERVAL_SECONDS = 3600.0


@dataclass
class Background:
    """The tasks and listeners started with the application, stopped with it."""

    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    receiver: SyslogReceiver | None = None
    detection: DetectionWorker | None = None
    detection_process: DetectionProcess | None = None
    syslog_ports: dict[str, int] = field(default_factory=dict)

    async def stop(self) -> None:
        """Stop every task and listener."""
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.receiver is not None:
            await self.receiver.stop()
        if self.detection_process is not None:
            await self.detection_process.stop()


def _store(state: AppState) -> EventStore:
    store: EventStore = state.extras["event_store"]
    return store


async def start_background(
    state: AppState, detection_child: Callable[[str, int], None] | None = None
) -> Background:
    """Start what the settings ask for and return a handle to stop it.

    With `detection_child` (a function that builds the application's state from the
    settings' JSON in a new process and calls `detection_process.run_child`), live
    detection runs in that process instead of in a thread of this one.
    """
    background = Background()
    state.extras["background"] = background
    settings = state.settings
    ports = (settings.syslog_udp_port, settings.syslog_tcp_port, settings.syslog_tls_port)
    if any(port is not None for port in ports):
        background.receiver = _syslog_receiver(state)
        background.syslog_ports = await background.receiver.start(
            host=settings.syslog_host,
            udp_port=settings.syslog_udp_port,
            tcp_port=settings.syslog_tcp_port,
            tls_port=settings.syslog_tls_port,
            tls_context=_syslog_tls(state) if settings.syslog_tls_port is not None else None,
        )
        logger.info("syslog listening on %s", background.syslog_ports)
    background.tasks.append(asyncio.create_task(_retention_loop(state)))
    if detection_child is not None:
        background.detection_process = DetectionProcess(detection_child, settings_json(settings))
        background.detection_process.start()
    else:
        background.detection = detection_worker(state)
        background.tasks.append(asyncio.create_task(background.detection.run_forever()))
    return background


def detection_worker(state: AppState) -> DetectionWorker:
    """Build the live detection worker over the rule registry's current rules.

    Each rule's dedupe comes from its own `puffin: dedupe`, else from `[detection.dedupe]`;
    new alerts of rules that are not staged go to the application's alert outputs.
    """
    registry = rule_registry(state)
    defaults = state.settings.detection.dedupe
    return DetectionWorker(
        store=_store(state),
        session_factory=state.session_factory,
        evaluator_provider=lambda: registry.current.ruleset,
        evaluator_for=OrganisationDetectors(lambda: registry.current),
        policy_for=RulePolicies(
            lambda: registry.current, AlertPolicy(tuple(defaults.fields), defaults.window)
        ),
        source_names=_source_names(state),
        outputs=alert_outputs(state),
    )


def _source_names(state: AppState) -> Callable[[uuid.UUID], str]:
    """Return a cached lookup of agent and syslog source names for alerts."""
    names: dict[uuid.UUID, str] = {}

    def name_of(source_id: uuid.UUID) -> str:
        if source_id not in names:
            with transaction(state.session_factory) as session:
                names[source_id] = endpoint_service.source_name(
                    session=session, source_id=source_id
                )
        return names[source_id]

    return name_of


def _syslog_receiver(state: AppState) -> SyslogReceiver:
    slug = state.settings.syslog_organisation
    with transaction(state.session_factory) as session:
        organisation = auth_service.get_organisation_by_slug(session=session, slug=slug)
    if organisation is None:
        raise RuntimeError(f"syslog_organisation {slug!r} does not exist; create it or change it")
    organisation_id = organisation.id

    def resolve(sender: str) -> uuid.UUID:
        with transaction(state.session_factory) as session:
            set_actor(session, Actor.system("syslog"))
            return endpoint_service.source_for(
                session=session,
                organisation_id=organisation_id,
                name=f"syslog-{sender}",
                kind="syslog",
                ip=sender,
            )

    def note_deliveries(events: dict[uuid.UUID, int]) -> None:
        with transaction(state.session_factory) as session:
            endpoint_service.record_deliveries(session=session, events=events)

    return SyslogReceiver(
        store=_store(state),
        organisation_id=organisation_id,
        resolve_source=resolve,
        decode=_decoder(),
        note_deliveries=note_deliveries,
    )


def _decoder() -> Callable[[str], dict[str, Any]]:
    """Return the text-log decoder when it is installed, else keep lines as they are."""
    try:
        module = importlib.import_module("puffin.ingest.decoders")
    except ImportError:
        return plain_decode
    decode: Callable[[str], dict[str, Any]] = module.Decoders().decode
    return decode


def _syslog_tls(state: AppState) -> ssl.SSLContext:
    settings = state.settings
    paths = ensure_certificate(settings.data_dir, settings.tls_cert_file, settings.tls_key_file)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(paths.cert_file, paths.key_file)
    return context


async def _retention_loop(state: AppState) -> None:
    settings = state.settings
    while True:
        try:
            deleted = await asyncio.to_thread(
                _store(state).apply_retention,
                max_age=timedelta(days=settings.event_retention_days),
                max_events=settings.event_retention_max_events,
                max_bytes=settings.event_retention_max_bytes,
            )
            if deleted:
                logger.info("retention deleted %d events", deleted)
        except Exception:
            logger.exception("event retention failed; it will run again")
        await asyncio.sleep(RETENTION_INTERVAL_SECONDS)
