"""Errors as `application/problem+json` (RFC 9457), so clients get a reason, never a trace."""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from puffin.core.errors import PuffinError, TooManyRequests

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(
    status: int, title: str, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """Return a problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def from_domain_error(request: Request, error: PuffinError) -> JSONResponse:
    """Turn a service error into its HTTP problem."""
    headers = None
    if isinstance(error, TooManyRequests):
        headers = {"Retry-After": str(error.retry_after)}
    if error.status_code == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return problem(error.status_code, error.title, error.detail, headers=headers)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def from_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """Turn a request validation failure into a 422 problem listing each field's reason."""
    errors = [
        {
            "location": _location(e.get("loc", ())),
            "message": e.get("msg", ""),
            "type": e.get("type"),
        }
        for e in error.errors()
    ]
    first = errors[0] if errors else {"location": "", "message": "invalid request"}
    detail = f"{first['location']}: {first['message']}" if first["location"] else first["message"]
    return problem(422, "Invalid request", detail, errors=errors)


def from_http_exception(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Turn framework HTTP errors (404 route, 405 method) into problems."""
    detail = error.detail if isinstance(error.detail, str) else "request refused"
    headers = dict(error.headers) if error.headers else None
    return problem(error.status_code, _title(error.status_code), detail, headers=headers)


def data_error_detail(error: DBAPIError) -> str:
    """Say which kind of value the database refused, without echoing the value."""
    message = str(error.orig)
    if "NUL" in message or "\\u0000" in message:
        return "text may not contain NUL (U+0000) characters"
    return "a value is out of range or malformed for the database"


def from_data_error(request: Request, error: DBAPIError) -> JSONResponse:
    """A value the database cannot store or compare (PostgreSQL refuses NUL characters in
    text; numbers can be out of range) is the request's fault: 422, not 500."""
    logger.info(
        "database refused a value on %s %s (%s)",
        request.method,
        request.url.path,
        type(error.orig).__name__,
    )
    return problem(422, "Invalid request", data_error_detail(error))


RETRY_AFTER_SECONDS = (2, 10)  # refused callers come back spread over this range
BUSY_LOG_SECONDS = 60.0  # after the first, at most one "busy" line this often
BUSY_TITLE = "Service unavailable"
BUSY_DETAIL = "the server is busy; try again after the Retry-After delay"


def retry_after() -> int:
    """Return the seconds a refused caller should wait, spread so they do not return at once."""
    low, high = RETRY_AFTER_SECONDS
    return random.randint(low, high)  # noqa: S311 - spreading retries, not a secret


class BusyLog:
    """Logs refusals for load at warning level, never the statement or its parameters.

    The first is logged at once; after it, one line every `BUSY_LOG_SECONDS` at most,
    counting the refusals since, so a burst of a thousand is a line, not a thousand.
    """

    def __init__(self, every: float = BUSY_LOG_SECONDS) -> None:
        self.every = every
        self._lock = threading.Lock()
        self._logged_at: float | None = None
        self._unlogged = 0

    def note(self, request: Request, error: SQLAlchemyError) -> None:
        """Count one refusal; log it (with those not logged before) when it is time."""
        now = time.monotonic()
        with self._lock:
            if self._logged_at is not None and now - self._logged_at < self.every:
                self._unlogged += 1
                return
            since, self._unlogged, self._logged_at = self._unlogged, 0, now
        cause = type(getattr(error, "orig", None) or error).__name__
        logger.warning(
            "database busy on %s %s (%s: %s); answered 503%s",
            request.method,
            request.url.path,
            type(error).__name__,
            cause,
            f" (and {since} more refusals since the last such line)" if since else "",
        )


def from_busy_database(request: Request, error: SQLAlchemyError, seconds: int) -> JSONResponse:
    """A lock or connection-pool wait that ran out is load: 503 with Retry-After, not 500."""
    return problem(503, BUSY_TITLE, BUSY_DETAIL, headers={"Retry-After": str(seconds)})


def from_unexpected(request: Request, error: Exception) -> JSONResponse:
    """Log an unexpected failure and answer 500 without internals."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Internal server error", "the server failed; the error is logged")


def _title(status: int) -> str:
    titles = {
        400: "Bad request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not found",
        405: "Method not allowed",
        413: "Payload too large",
        415: "Unsupported media type",
        422: "Invalid request",
        429: "Too many requests",
        503: "Service unavailable",
    }
    return titles.get(status, "Error")
