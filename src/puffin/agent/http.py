"""A small HTTPS client on the standard library: the agent's footprint matters more than
features (httpx alone costs the agent about 20 MB of memory)."""

from __future__ import annotations

import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit


class TransportError(Exception):
    """The request did not get an answer (connection, TLS or protocol failure)."""


class Response:
    """A status, headers (lower-case names) and a body."""

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    @property
    def text(self) -> str:
        """Return the body as text."""
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Return the body parsed as JSON."""
        return json.loads(self.content)


class Client:
    """One kept-alive HTTPS connection to a server, reopened when it breaks."""

    def __init__(
        self,
        base_url: str,
        context: ssl.SSLContext,
        headers: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"the server address must be https://HOST:PORT, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._context = context
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._connection: http.client.HTTPSConnection | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def post(
        self,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """Send a POST and return the response; reconnect once if a kept-alive link broke."""
        body = content
        sent_headers = {**self._headers, **(headers or {})}
        if json is not None:
            body = _dumps(json)
            sent_headers.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            try:
                return self._send("POST", path, body, sent_headers)
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if attempt == 2 or isinstance(error, ssl.SSLCertVerificationError):
                    raise TransportError(f"{type(error).__name__}: {error}") from error
        raise AssertionError("unreachable")

    def _send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=self._timeout
            )
        self._connection.request(method, path, body=body, headers=headers)
        reply = self._connection.getresponse()
        content = reply.read()
        names = {name.lower(): value for name, value in reply.getheaders()}
        if names.get("connection", "").lower() == "close":
            self.close()
        return Response(reply.status, names, content)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
