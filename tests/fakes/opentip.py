"""A fake Kaspersky OpenTIP on loopback: canned zones, a quota, throttling, in-flight counts.

It speaks the lookup API (`GET /api/v1/search/{ip,domain,hash}?request=…` with `x-api-key`)
and answers with OpenTIP's shapes, so the real httpx client is what the tests exercise.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v1/search/"
_DEFAULT_FILE_STATUS = {
    "Green": "Clean",
    "Red": "Malware",
    "Orange": "Malware",
    "Yellow": "Adware and other",
    "Grey": "NotCategorized",
}


@dataclass
class Canned:
    """One prepared answer: a zone and verdict, or a bare HTTP status."""

    zone: str = "Grey"
    verdict: str | None = None  # FileStatus, IP Status, or one domain category
    status: int = 200


@dataclass
class FakeOpenTip:
    """The fake's configuration and what it observed; change it while the server runs."""

    base_url: str = ""
    api_key: str = "test-opentip-key"
    answers: dict[tuple[str, str], Canned] = field(default_factory=dict)
    quota: int | None = None  # answers served before every request gets 403
    throttled: dict[str, int] = field(default_factory=dict)  # value -> 429s still to send
    retry_after: str = "1"  # "" sends no Retry-After header
    hold_until_in_flight: int | None = None  # hold requests until this many are in flight
    hold_seconds: float = 0.0  # keep each request in flight this long before answering
    requests: list[tuple[str, str]] = field(default_factory=list)
    max_in_flight: int = 0
    _answered: int = 0
    _in_flight: int = 0
    _latch_open: bool = False
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def answer(self, kind: str, value: str, zone: str, verdict: str | None = None) -> None:
        """Prepare the answer for one value."""
        self.answers[(kind, value)] = Canned(zone, verdict)

    def fail(self, kind: str, value: str, status: int) -> None:
        """Answer this value with a bare HTTP status (404, 400, 500…)."""
        self.answers[(kind, value)] = Canned(status=status)

    def count(self, kind: str, value: str) -> int:
        """Return how many requests asked about this value."""
        with self._lock:
            return self.requests.count((kind, value))

    def enter(self, kind: str, value: str) -> None:
        with self._lock:
            self.requests.append((kind, value))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._lock.notify_all()
            if self.hold_until_in_flight is not None:
                self._lock.wait_for(self._released, timeout=5)
        if self.hold_seconds:
            time.sleep(self.hold_seconds)  # overlapping requests show up in max_in_flight

    def _released(self) -> bool:
        """Once enough requests were in flight together, let every request through."""
        self._latch_open = self._latch_open or self._in_flight >= (self.hold_until_in_flight or 0)
        return self._latch_open

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def respond(self, kind: str, value: str) -> tuple[int, dict[str, str], Any]:
        """Decide the status, headers and JSON body for one authorised lookup."""
        with self._lock:
            if self.quota is not None and self._answered >= self.quota:
                return 403, {}, {"message": "quota or request limit exceeded"}
            if self.throttled.get(value, 0) > 0:
                self.throttled[value] -= 1
                headers = {"Retry-After": self.retry_after} if self.retry_after else {}
                return 429, headers, {"message": "too many requests"}
            canned = self.answers.get((kind, value), Canned())
            if canned.status != 200:
                return canned.status, {}, {"message": "lookup results not found"}
            self._answered += 1
        return 200, {}, _body(kind, value, canned)


def _body(kind: str, value: str, canned: Canned) -> dict[str, Any]:
    if kind == "hash":
        status = canned.verdict or _DEFAULT_FILE_STATUS[canned.zone]
        names = {32: "Md5", 40: "Sha1", 64: "Sha256"}
        info = {"FileStatus": status, names.get(len(value), "Sha256"): value.upper()}
        return {"Zone": canned.zone, "FileGeneralInfo": {**info, "HitsCount": 10, "Size": 4096}}
    if kind == "ip":
        info = {"Status": canned.verdict or "known", "CountryCode": "US", "Ip": value}
        return {"Zone": canned.zone, "IpGeneralInfo": {**info, "HitsCount": 100}}
    categories = [canned.verdict] if canned.verdict else []
    with_zone = [{"Name": name, "Zone": canned.zone} for name in categories]
    domain: dict[str, Any] = {"Domain": value, "Categories": categories, "FilesCount": 0}
    return {"Zone": canned.zone, "DomainGeneralInfo": {**domain, "CategoriesWithZone": with_zone}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenTip

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        kind = url.path[len(PREFIX) :] if url.path.startswith(PREFIX) else ""
        values = parse_qs(url.query).get("request", [])
        if kind not in ("ip", "domain", "hash") or len(values) != 1:
            self._send(400, {}, {"message": "incorrect query"})
        elif self.headers.get("x-api-key") != self.fake.api_key:
            self._send(401, {}, {"message": "user authentication failed"})
        else:
            self.fake.enter(kind, values[0])
            try:
                self._send(*self.fake.respond(kind, values[0]))
            finally:
                self.fake.leave()

    def _send(self, status: int, headers: dict[str, str], body: Any) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, text in headers.items():
            self.send_header(name, text)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; the tests read `requests` instead."""


@contextmanager
def fake_opentip(**settings: Any) -> Iterator[FakeOpenTip]:
    """Run a fake OpenTIP on 127.0.0.1; yield it with `base_url` set for the client."""
    fake = FakeOpenTip(**settings)
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fake-opentip",
        daemon=True,
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
