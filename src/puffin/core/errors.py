"""Domain errors: services raise these; the HTTP layer turns them into problem responses."""

from __future__ import annotations


class PuffinError(Exception):
    """Base of every error a service raises on purpose."""

    status_code = 400
    title = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(PuffinError):
    """The object does not exist, or the caller may not know that it does."""

    status_code = 404
    title = "Not found"


class Forbidden(PuffinError):
    """The caller is known but may not do this."""

    status_code = 403
    title = "Forbidden"


class Unauthenticated(PuffinError):
    """The caller did not prove who they are."""

    status_code = 401
    title = "Unauthorized"


class Conflict(PuffinError):
    """The change clashes with the stored state (a duplicate name, say)."""

    status_code = 409
    title = "Conflict"


class InvalidInput(PuffinError):
    """The request is well formed but its content cannot be accepted."""

    status_code = 422
    title = "Invalid input"


class TooManyRequests(PuffinError):
    """The caller must wait before trying again."""

    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
