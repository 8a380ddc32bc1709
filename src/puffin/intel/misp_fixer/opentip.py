"""A Kaspersky OpenTIP client for IP, domain and hash reputation: cached, bounded and polite."""

from __future__ import annotations

import email.utils
import ipaddress
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from puffin.core.clock import utcnow

DEFAULT_BASE_URL = "https://opentip.kaspersky.com/api/v1/search/"
KINDS = ("ip", "domain", "hash")
ZONES = frozenset({"Red", "Orange", "Yellow", "Grey", "Green"})
NOT_FOUND = "NotFound"

Query = tuple[str, str]  # (kind, value)
_HEX = re.compile(r"[0-9a-fA-F]+")
_SELECT_BATCH = 500  # values per cache query, well under SQLite's limit on parameters


@dataclass(frozen=True)
class Reputation:
    """What OpenTIP said about one value: its zone and the kind-specific verdict."""

    kind: str
    value: str
    zone: str
    verdict: str  # FileStatus, IP Status, or the domain's categories joined with ","
    fetched_at: datetime


@dataclass(frozen=True)
class BenignPolicy:
    """Which OpenTIP answers make a value known-good: a benign zone and a known-good verdict."""

    zones: frozenset[str] = frozenset({"Green"})
    file_statuses: frozenset[str] = frozenset({"Clean"})
    ip_statuses: frozenset[str] = frozenset({"known"})
    domain_needs_category: bool = True

    def __post_init__(self) -> None:
        if "Grey" in self.zones:
            raise ValueError("Grey means OpenTIP knows nothing; it never makes a value benign")
        unknown = set(self.zones) - ZONES
        if unknown:
            raise ValueError(f"unknown OpenTIP zones: {', '.join(sorted(unknown))}")

    def is_benign(self, reputation: Reputation) -> bool:
        """Return whether this answer says the value is known to be good."""
        if reputation.zone not in self.zones:
            return False
        if reputation.kind == "hash":
            return reputation.verdict in self.file_statuses
        if reputation.kind == "ip":
            return reputation.verdict in self.ip_statuses
        return bool(reputation.verdict) or not self.domain_needs_category


@dataclass
class LookupReport:
    """The answers of one run and what could not be asked; counts are distinct queries."""

    reputations: dict[Query, Reputation] = field(default_factory=dict)
    lookups: int = 0  # answered by OpenTIP in this run
    cached: int = 0  # answered from the cache
    not_looked_up: int = 0  # over the limit, or after OpenTIP stopped answering
    errors: list[str] = field(default_factory=list)


def normalise(kind: str, value: str) -> str:
    """Return the canonical form of a value of this kind; ValueError when it is not one."""
    text = value.strip()
    if kind == "ip":
        return str(ipaddress.ip_address(text))
    if kind == "domain" and text:
        return text.rstrip(".").lower()
    if kind == "hash" and len(text) in (32, 40, 64) and _is_hex(text):
        return text.lower()
    raise ValueError(f"not an OpenTIP {kind}: {value!r}")


def _is_hex(text: str) -> bool:
    return _HEX.fullmatch(text) is not None


class OpenTipCache:
    """Answers kept in a SQLite file of their own, fresh for `ttl` after they were fetched."""

    def __init__(self, path: Path, *, ttl: timedelta, clock: Callable[[], datetime]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS opentip_cache (kind TEXT NOT NULL,"
                " value TEXT NOT NULL, zone TEXT NOT NULL, verdict TEXT NOT NULL,"
                " fetched_at REAL NOT NULL, PRIMARY KEY (kind, value)) WITHOUT ROWID"
            )
        except sqlite3.Error:
            self._db.close()  # not a database, read-only, …: the caller says which file
            raise

    def fresh(self, queries: Iterable[Query]) -> dict[Query, Reputation]:
        """Return the cached answers younger than the TTL for these queries."""
        oldest = (self._clock() - self._ttl).timestamp()
        by_kind: dict[str, list[str]] = {}
        for kind, value in dict.fromkeys(queries):
            by_kind.setdefault(kind, []).append(value)
        found: dict[Query, Reputation] = {}
        with self._lock:
            for kind, values in by_kind.items():
                for start in range(0, len(values), _SELECT_BATCH):
                    batch = values[start : start + _SELECT_BATCH]
                    marks = ",".join("?" * len(batch))
                    rows = self._db.execute(
                        "SELECT value, zone, verdict, fetched_at FROM opentip_cache"  # noqa: S608 - only "?" marks are formatted in
                        f" WHERE kind = ? AND fetched_at >= ? AND value IN ({marks})",
                        (kind, oldest, *batch),
                    )
                    for value, zone, verdict, fetched_at in rows:
                        fetched = datetime.fromtimestamp(fetched_at, UTC)
                        found[(kind, value)] = Reputation(kind, value, zone, verdict, fetched)
        return found

    def store(self, reputations: Iterable[Reputation]) -> None:
        """Keep these answers, replacing older ones for the same (kind, value)."""
        rows = [(r.kind, r.value, r.zone, r.verdict, r.fetched_at.timestamp()) for r in reputations]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO opentip_cache VALUES (?, ?, ?, ?, ?)", rows
                )
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()


@dataclass(frozen=True)
class _Outcome:
    """How one query ended: an answer, a stop (quota, key refused), a skip or an error."""

    reputation: Reputation | None = None
    stop: str | None = None
    skipped: bool = False
    error: str | None = None


class OpenTipClient:
    """Looks values up on OpenTIP with a few requests in flight; a synchronous API.

    OpenTIP answers `GET <base>/{ip,domain,hash}?request=<value>` with the header `x-api-key`.
    A 200 answer carries `Zone` (Red, Orange, Yellow, Grey or Green) and a section per kind:
    `IpGeneralInfo.Status` (known, reserved, NoInfo), `DomainGeneralInfo.Categories`, and
    `FileGeneralInfo.FileStatus` (Clean, NoThreats, Malware, Adware and other, NotCategorized).
    Green means "good or no threats detected"; Grey means OpenTIP knows nothing; 404 (not
    found) is kept as Grey. 403 means the key's quota is spent and 401 that the key is refused:
    either stops every further lookup of the run and is reported, never guessed around. 429,
    5xx and network failures are retried with exponential back-off and jitter, honouring
    `Retry-After` (up to `max_wait_seconds`), `max_retries` times, then reported as an error
    for that value. Answers are cached in their own SQLite file (WAL), keyed by (kind, value),
    for `cache_ttl`. `lookup` asks OpenTIP for at most `limit` values not in the cache.
    """

    def __init__(
        self,
        *,
        api_key: str,
        cache_path: Path,
        base_url: str = DEFAULT_BASE_URL,
        concurrency: int = 8,
        cache_ttl: timedelta = timedelta(hours=24),
        policy: BenignPolicy | None = None,
        max_retries: int = 4,
        max_wait_seconds: float = 60.0,
        timeout_seconds: float = 30.0,
        verify: bool | str = True,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.policy = policy or BenignPolicy()
        self._base_url = base_url.rstrip("/") + "/"
        self._concurrency = concurrency
        self._max_retries = max_retries
        self._max_wait = max_wait_seconds
        self._clock = clock
        self._sleep = sleep
        self._cache = OpenTipCache(cache_path, ttl=cache_ttl, clock=clock)
        self._http = httpx.Client(
            headers={"x-api-key": api_key, "Accept": "application/json"},
            timeout=timeout_seconds,
            verify=verify,
            limits=httpx.Limits(max_connections=concurrency),
        )

    def __enter__(self) -> OpenTipClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the HTTP connections and the cache file."""
        self._http.close()
        self._cache.close()

    def lookup(self, queries: Sequence[Query], *, limit: int) -> LookupReport:
        """Answer (kind, value) queries from the cache, then ask OpenTIP for at most `limit`."""
        report = LookupReport()
        wanted = self._canonical(queries, report)
        cached = self._cache.fresh(wanted)
        report.reputations.update(cached)
        report.cached = len(cached)
        missing = [query for query in wanted if query not in cached]
        report.not_looked_up = max(0, len(missing) - max(limit, 0))
        self._fetch_all(missing[: max(limit, 0)], report)
        self._cache.store(r for q, r in report.reputations.items() if q not in cached)
        return report

    def _canonical(self, queries: Sequence[Query], report: LookupReport) -> list[Query]:
        wanted: dict[Query, None] = {}
        for kind, value in queries:
            try:
                wanted[(kind, normalise(kind, value))] = None
            except ValueError as error:
                report.errors.append(str(error))
        return list(wanted)

    def _fetch_all(self, queries: list[Query], report: LookupReport) -> None:
        stop = threading.Event()
        with ThreadPoolExecutor(self._concurrency, thread_name_prefix="opentip") as pool:
            outcomes = list(pool.map(lambda query: self._fetch(query, stop), queries))
        stops: list[str] = []
        for query, outcome in zip(queries, outcomes, strict=True):
            if outcome.reputation is not None:
                report.reputations[query] = outcome.reputation
                report.lookups += 1
            elif outcome.error is not None:
                report.errors.append(outcome.error)
            else:
                report.not_looked_up += 1
                stops += [outcome.stop] if outcome.stop else []
        if stops:
            report.errors.append(f"{stops[0]} after {report.lookups} lookups")

    def _fetch(self, query: Query, stop: threading.Event) -> _Outcome:
        kind, value = query
        problem = "no attempt"
        for attempt in range(self._max_retries + 1):
            if stop.is_set():
                return _Outcome(skipped=True)
            try:
                response = self._http.get(self._base_url + kind, params={"request": value})
            except httpx.TransportError as error:
                problem, delay = type(error).__name__, self._backoff(attempt)
            else:
                outcome = self._outcome(query, response, stop)
                if outcome is not None:
                    return outcome
                problem = f"HTTP {response.status_code}"
                delay = _retry_after(response, self._clock()) or self._backoff(attempt)
            if attempt == self._max_retries or delay > self._max_wait:
                break
            self._sleep(delay)
        return _Outcome(error=f"OpenTIP {kind} lookup of {value!r} failed: {problem}")

    def _outcome(
        self, query: Query, response: httpx.Response, stop: threading.Event
    ) -> _Outcome | None:
        """Turn an answer into an outcome; None when it is worth asking again."""
        status = response.status_code
        if status in (403, 401):
            stop.set()
            reason = "quota exhausted" if status == 403 else "API key refused"
            return _Outcome(stop=f"OpenTIP {reason} ({status})")
        if status == 429 or status >= 500:
            return None
        if status == 404:
            return _Outcome(Reputation(*query, "Grey", NOT_FOUND, self._clock()))
        if status != 200:
            return _Outcome(error=f"OpenTIP {query[0]} lookup of {query[1]!r}: HTTP {status}")
        try:
            body = response.json()
        except ValueError:
            return _Outcome(error=f"OpenTIP {query[0]} lookup of {query[1]!r}: not JSON")
        return _Outcome(_reputation(query, body, self._clock()))

    def _backoff(self, attempt: int) -> float:
        """Exponential back-off from one second, with jitter so workers do not wake together."""
        ceiling = min(self._max_wait, 2.0**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not secrets


def _retry_after(response: httpx.Response, now: datetime) -> float | None:
    """Return the wait `Retry-After` asks for (seconds or an HTTP date), or None."""
    header = response.headers.get("Retry-After")
    if not header:
        return None
    if header.strip().isdigit():
        return float(header.strip())
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - now).total_seconds())


def _reputation(query: Query, body: Any, now: datetime) -> Reputation:
    """Read the zone and the kind-specific verdict out of a 200 answer."""
    body = body if isinstance(body, dict) else {}
    zone = body.get("Zone") if body.get("Zone") in ZONES else "Grey"
    kind = query[0]
    if kind == "hash":
        verdict = str(_section(body, "FileGeneralInfo").get("FileStatus") or "")
    elif kind == "ip":
        verdict = str(_section(body, "IpGeneralInfo").get("Status") or "")
    else:
        categories = _section(body, "DomainGeneralInfo").get("Categories") or []
        verdict = (
            ",".join(sorted(str(c) for c in categories)) if isinstance(categories, list) else ""
        )
    return Reputation(kind, query[1], str(zone), verdict, now)


def _section(body: dict[str, Any], name: str) -> dict[str, Any]:
    section = body.get(name)
    return section if isinstance(section, dict) else {}
