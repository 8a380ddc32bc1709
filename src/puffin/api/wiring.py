"""What the Puffin server and the standalone MISP fixer wire alike into their applications.

Both answer errors as `application/problem+json`, count and time requests by route, set
security headers, and write the audit trail when a session commits; each application
says only what differs (the server's console pages, its Content-Security-Policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from sqlalchemy import Engine, event
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from puffin.api import errors as api_errors
from puffin.audit import service as audit_service
from puffin.core.db import is_busy, make_session_factory
from puffin.core.errors import PuffinError
from puffin.core.metrics import HttpMetrics

# (request, status, title, detail) -> a page for a browser, or None for problem+json.
ErrorPage = Callable[[Request, int, str, str], Response | None]
# request -> the headers its answer gets (unless the route set them already).
ResponseHeaders = Callable[[Request], Mapping[str, str]]


def audited_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Return a session factory whose commits also write the pending audit entries."""
    factory = make_session_factory(engine)
    event.listen(factory, "before_commit", _write_audit_on_commit)
    return factory


def _write_audit_on_commit(session: Session) -> None:
    audit_service.write_pending(session=session)


def _no_page(request: Request, status: int, title: str, detail: str) -> Response | None:
    return None


def install_error_handlers(app: FastAPI, *, page: ErrorPage = _no_page) -> None:
    """Answer every error as `application/problem+json`, or with `page` where it gives one.

    A database too busy to answer in time (a lock or connection-pool wait ran out) is
    503 with `Retry-After`, so agents and scripts come back later. Validation errors and
    unexpected ones are always problem+json: a form's validation errors are shown by the
    page itself, and an unexpected error says nothing either way.
    """

    async def on_domain(request: Request, error: Exception) -> Response:
        assert isinstance(error, PuffinError)
        shown = page(request, error.status_code, error.title, error.detail)
        return shown if shown is not None else api_errors.from_domain_error(request, error)

    async def on_validation(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        return api_errors.from_validation_error(request, error)

    async def on_http(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        detail = error.detail if isinstance(error.detail, str) else ""
        shown = page(request, error.status_code, "Error", detail)
        return shown if shown is not None else api_errors.from_http_exception(request, error)

    async def on_data_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, DataError)
        detail = api_errors.data_error_detail(error)
        shown = page(request, 422, "Invalid request", detail)
        return shown if shown is not None else api_errors.from_data_error(request, error)

    busy_log = api_errors.BusyLog()

    async def on_database(request: Request, error: Exception) -> Response:
        if not is_busy(error):
            return api_errors.from_unexpected(request, error)
        assert isinstance(error, OperationalError | PoolTimeout)
        busy_log.note(request, error)
        seconds = api_errors.retry_after()
        shown = page(request, 503, api_errors.BUSY_TITLE, api_errors.BUSY_DETAIL)
        if shown is None:
            return api_errors.from_busy_database(request, error, seconds)
        shown.headers["Retry-After"] = str(seconds)
        return shown

    async def on_unexpected(request: Request, error: Exception) -> Response:
        return api_errors.from_unexpected(request, error)

    app.add_exception_handler(PuffinError, on_domain)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(DataError, on_data_error)
    app.add_exception_handler(OperationalError, on_database)  # busy: 503, else 500
    app.add_exception_handler(PoolTimeout, on_database)
    app.add_exception_handler(Exception, on_unexpected)


def install_request_observer(
    app: FastAPI, metrics: HttpMetrics, *, headers: ResponseHeaders
) -> None:
    """Count requests by method, route template and status, time them, and add `headers`."""
    app.add_middleware(_RequestObserver, metrics=metrics, headers=headers)


class _RequestObserver:
    """Plain ASGI middleware (Starlette's `BaseHTTPMiddleware` costs a stream per request)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics, headers: ResponseHeaders) -> None:
        self.app = app
        self.metrics = metrics
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        extra = self.headers(Request(scope))
        status = 500  # unless an answer starts: an exception the error handlers did not take

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer = MutableHeaders(scope=message)
                for name, value in extra.items():
                    if name not in answer:
                        answer[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
