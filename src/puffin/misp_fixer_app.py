"""Build the MISP event fixer alone: the webhook, health, metrics and API docs, nothing else.

`puffin misp-fixer serve` runs this for teams that want only the fixer. It is the same
webhook (`puffin.api.misp_webhook`) as inside the Puffin server, and it records runs the
same way, in Puffin's state database (by default `puffin.db` in the data directory), so a
Puffin server given the same database shows them on its console.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from puffin import __version__
from puffin.api import errors as api_errors
from puffin.api.health import router as health_router
from puffin.api.misp_webhook import STATE_ATTRIBUTE, MispFixerService
from puffin.api.misp_webhook import router as webhook_router
from puffin.audit import service as audit_service
from puffin.auth import service as auth_service
from puffin.auth.schemas import OrganisationCreate
from puffin.core.changes import Actor, set_actor
from puffin.core.crypto import load_or_create_secret
from puffin.core.db import make_engine, make_session_factory, transaction
from puffin.core.errors import PuffinError
from puffin.core.metrics import HttpMetrics
from puffin.core.settings import Settings
from puffin.core.state import AppState
from puffin.intel.misp_fixer.settings import FixerSettings
from puffin.migrations.runner import upgrade_database

logger = logging.getLogger(__name__)

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _write_audit_on_commit(session: Session) -> None:
    audit_service.write_pending(session=session)


def build_fixer_state(settings: Settings) -> AppState:
    """Create the state database's engine and session factory, with the audit hook."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    factory = make_session_factory(engine)
    event.listen(factory, "before_commit", _write_audit_on_commit)
    return AppState(
        settings=settings,
        engine=engine,
        session_factory=factory,
        secret_key=load_or_create_secret(settings.data_dir / "secret_key"),
        metrics=HttpMetrics(),
    )


def prepare_store(state: AppState, *, organisation: str) -> None:
    """Migrate the state database and create the runs' organisation when it is missing."""
    upgrade_database(state.settings.resolved_database_url)
    with transaction(state.session_factory) as session:
        set_actor(session, Actor.system("misp-fixer"))
        if auth_service.get_organisation_by_slug(session=session, slug=organisation) is None:
            auth_service.create_organisation(
                session=session,
                org_in=OrganisationCreate(name=organisation.title(), slug=organisation),
            )
            logger.info("created organisation %r for the fixer's runs", organisation)


def create_misp_fixer_app(settings: Settings, fixer_settings: FixerSettings) -> FastAPI:
    """Return the standalone fixer application for these settings."""
    state = build_fixer_state(settings)
    service = MispFixerService(
        settings=fixer_settings,
        data_dir=settings.data_dir,
        session_factory=state.session_factory,
        registry=state.metrics.registry,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(prepare_store, state, organisation=fixer_settings.organisation)
        await asyncio.to_thread(service.fixer)  # warninglists load before the first call
        yield
        service.close()
        state.engine.dispose()

    app = FastAPI(
        title="Puffin MISP event fixer",
        version=__version__,
        description="Fixes a MISP event before it is published; MISP's workflow calls "
        "the webhook on `event-publish`.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url="/redoc",
        openapi_url="/openapi.json",
    )
    app.state.puffin = state
    setattr(app.state, STATE_ATTRIBUTE, service)
    _install_error_handlers(app)
    _install_middleware(app, state)
    app.include_router(health_router)
    app.include_router(webhook_router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Answer every error as `application/problem+json`, as the server's API does."""

    async def on_domain(request: Request, error: Exception) -> Response:
        assert isinstance(error, PuffinError)
        return api_errors.from_domain_error(request, error)

    async def on_validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return api_errors.from_validation_error(request, error)

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        return api_errors.from_http_exception(request, error)

    async def on_unexpected(request: Request, error: Exception) -> Response:
        return api_errors.from_unexpected(request, error)

    app.add_exception_handler(PuffinError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def _install_middleware(app: FastAPI, state: AppState) -> None:
    """Count requests by route and status, and set the security headers."""

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        template = getattr(request.scope.get("route"), "path", "unmatched")
        state.metrics.requests.labels(request.method, template, str(response.status_code)).inc()
        state.metrics.latency.labels(request.method, template).observe(
            time.perf_counter() - started
        )
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
        if state.settings.tls:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
