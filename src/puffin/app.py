"""Build the Puffin server application from settings, with nothing done at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from puffin import __version__
from puffin.alert.outputs import STATE_KEY as ALERT_OUTPUTS_KEY
from puffin.alert.outputs import AlertOutputs
from puffin.api.agent_gateway import router as agent_gateway_router
from puffin.api.health import router as health_router
from puffin.api.misp_webhook import STATE_ATTRIBUTE as MISP_FIXER_STATE
from puffin.api.misp_webhook import MispFixerService
from puffin.api.misp_webhook import router as misp_webhook_router
from puffin.api.v1.router import router as api_v1_router
from puffin.api.wiring import (
    audited_session_factory,
    install_error_handlers,
    install_request_observer,
)
from puffin.auth import service as auth_service
from puffin.core.crypto import load_or_create_secret
from puffin.core.db import make_engine, transaction
from puffin.core.metrics import HttpMetrics
from puffin.core.settings import Settings
from puffin.core.state import AppState
from puffin.core.tls import fingerprint_of_file
from puffin.detection.registry import STATE_KEY as RULE_REGISTRY_KEY
from puffin.detection.registry import RuleRegistry, rule_registry
from puffin.endpoint.contacts import contact_book
from puffin.ingest.store import EventStore
from puffin.ingest.writer import GroupCommitWriter
from puffin.intel.misp_fixer.settings import FixerSettings
from puffin.migrations.runner import upgrade_database
from puffin.web import errors as web_errors
from puffin.web.router import router as web_router
from puffin.worker.background import detection_worker, start_background
from puffin.worker.detection_process import run_child

logger = logging.getLogger(__name__)

Announce = Callable[[str], None]

_STATIC_DIR = Path(__file__).parent / "web" / "static"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}


def build_state(settings: Settings) -> AppState:
    """Create engines, session factory and registries owned by one application."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    factory = audited_session_factory(engine)
    secret = (
        settings.secret_key.get_secret_value()
        if settings.secret_key
        else load_or_create_secret(settings.data_dir / "secret_key")
    )
    fingerprint = None
    cert_file = settings.tls_cert_file or settings.data_dir / "tls" / "server.crt"
    if settings.tls and cert_file.exists():
        fingerprint = fingerprint_of_file(cert_file)
    events_engine = (
        engine
        if settings.resolved_events_database_url == settings.resolved_database_url
        else make_engine(settings.resolved_events_database_url)
    )
    return AppState(
        settings=settings,
        engine=engine,
        session_factory=factory,
        secret_key=secret,
        metrics=HttpMetrics(),
        tls_fingerprint=fingerprint,
        extras={
            "event_store": EventStore(events_engine),
            RULE_REGISTRY_KEY: RuleRegistry(
                settings.data_dir, placeholders=settings.detection.placeholders
            ),
            ALERT_OUTPUTS_KEY: AlertOutputs(),
        },
    )


def run_detection_child(settings_text: str, parent_pid: int) -> None:
    """Entry point of the live detection process (see puffin.worker.detection_process)."""
    settings = Settings.model_validate_json(settings_text)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s [detection] %(name)s: %(message)s",
    )
    state = build_state(settings)
    try:
        run_child(state, detection_worker, parent_pid)
    finally:
        event_store(state).engine.dispose()
        state.engine.dispose()


def prepare_database(state: AppState, announce: Announce) -> None:
    """Migrate the database to the newest schema and create the first admin if needed."""
    upgrade_database(state.settings.resolved_database_url)
    event_store(state).create_schema()
    with transaction(state.session_factory) as session:
        created = auth_service.ensure_initial_admin(session=session)
    if created is not None:
        username, password = created
        announce(
            "Puffin created the first site admin. This password is shown once; "
            f"keep it safe:\n  username: {username}\n  password: {password}"
        )


def event_store(state: AppState) -> EventStore:
    """Return the application's event store."""
    store: EventStore = state.extras["event_store"]
    return store


def _console_error_page(request: Request, status: int, title: str, detail: str) -> Response | None:
    """Return the console's error page for a browser; None (problem+json) for API callers."""
    path = request.url.path
    if path.startswith(("/api/", "/webhook/")) or path in {"/healthz", "/readyz", "/metrics"}:
        return None
    if "text/html" not in request.headers.get("accept", ""):
        return None
    return web_errors.render_error(request, status, title, detail)


def _security_headers(settings: Settings) -> Callable[[Request], Mapping[str, str]]:
    """Return the headers for each answer: no CSP on the API docs pages, HSTS under TLS."""
    everywhere = dict(_SECURITY_HEADERS)
    if settings.tls:
        everywhere["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    on_docs = {k: v for k, v in everywhere.items() if k != "Content-Security-Policy"}

    def headers(request: Request) -> Mapping[str, str]:
        return on_docs if request.url.path in {"/docs", "/redoc"} else everywhere

    return headers


def create_app(settings: Settings, *, announce: Announce = print) -> FastAPI:
    """Return the server application for these settings."""
    state = build_state(settings)
    fixer_service = MispFixerService(
        settings=FixerSettings.model_validate(settings.misp_fixer),
        data_dir=settings.data_dir,
        session_factory=state.session_factory,
        registry=state.metrics.registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        prepare_database(state, announce)
        snapshot = await asyncio.to_thread(rule_registry(state).reload)
        warned = [e for e in snapshot.entries.values() if e.warnings]
        logger.info(
            "rules: %d loaded, %d problems, %d with warnings",
            len(snapshot.entries),
            len(snapshot.problems),
            len(warned),
        )
        for entry in warned:
            logger.warning("rule %s (%s): %s", entry.id, entry.file, "; ".join(entry.warnings))
        writer = GroupCommitWriter(event_store(state))
        state.extras["event_writer"] = writer
        writer.start()
        contacts = contact_book(state)
        contacts.start()
        background = await start_background(
            state, run_detection_child if settings.detection.process else None
        )
        yield
        await background.stop()
        await asyncio.to_thread(contacts.stop)  # writes the call-ins still noted
        writer.stop()
        fixer_service.close()
        event_store(state).engine.dispose()
        state.engine.dispose()

    app = FastAPI(
        title="Puffin",
        version=__version__,
        description="Managed detection and response: Puffin's REST API.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    app.state.puffin = state
    setattr(app.state, MISP_FIXER_STATE, fixer_service)
    install_error_handlers(app, page=_console_error_page)
    install_request_observer(app, state.metrics, headers=_security_headers(settings))
    app.include_router(health_router)
    app.include_router(api_v1_router)
    app.include_router(agent_gateway_router)
    app.include_router(misp_webhook_router)
    app.include_router(web_router)
    app.mount("/static", StaticFiles(directory=_STATIC_DIR), name="static")
    return app
