"""Build the MISP event fixer alone: the webhook, health, metrics and API docs, nothing else.

`puffin misp-fixer serve` runs this for teams that want only the fixer. It is the same
webhook (`puffin.api.misp_webhook`) as inside the Puffin server, and it records runs the
same way, in Puffin's state database (by default `puffin.db` in the data directory), so a
Puffin server given the same database shows them on its console.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from puffin import __version__
from puffin.api.health import router as health_router
from puffin.api.misp_webhook import STATE_ATTRIBUTE, MispFixerService
from puffin.api.misp_webhook import router as webhook_router
from puffin.api.wiring import (
    audited_session_factory,
    install_error_handlers,
    install_request_observer,
)
from puffin.auth import service as auth_service
from puffin.auth.schemas import OrganisationCreate
from puffin.core.changes import Actor, set_actor
from puffin.core.crypto import load_or_create_secret
from puffin.core.db import make_engine, transaction
from puffin.core.metrics import HttpMetrics
from puffin.core.settings import Settings
from puffin.core.state import AppState
from puffin.intel.misp_fixer.fixer import FixerSetupError
from puffin.intel.misp_fixer.settings import FixerSettings
from puffin.migrations.runner import upgrade_database

logger = logging.getLogger(__name__)

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def build_fixer_state(settings: Settings) -> AppState:
    """Create the state database's engine and session factory, with the audit hook."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    return AppState(
        settings=settings,
        engine=engine,
        session_factory=audited_session_factory(engine),
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
        try:
            await asyncio.to_thread(service.fixer)  # warninglists load before the first call
        except FixerSetupError as error:  # the webhook answers 503 with the same reason
            logger.error("the MISP fixer cannot start: %s", error.detail)
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
    install_error_handlers(app)  # problem+json only: there are no console pages here
    install_request_observer(app, state.metrics, headers=_security_headers(settings))
    app.include_router(health_router)
    app.include_router(webhook_router)
    return app


def _security_headers(settings: Settings) -> Callable[[Request], Mapping[str, str]]:
    """Return the headers of every answer, with HSTS when the service speaks TLS."""
    headers = dict(_HEADERS)
    if settings.tls:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return lambda request: headers
