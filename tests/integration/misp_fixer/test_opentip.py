"""The OpenTIP client against a fake OpenTIP over real HTTP: verdicts, cache, limits, back-off."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.opentip import FakeOpenTip, fake_opentip

from puffin.intel.misp_fixer.classify import Classifier, Verdict
from puffin.intel.misp_fixer.opentip import (
    BenignPolicy,
    OpenTipCache,
    OpenTipClient,
    Reputation,
)

CLEAN_SHA256 = "a" * 64
NO_THREATS_MD5 = "b" * 32
MALWARE_SHA1 = "c" * 40
UNKNOWN_SHA256 = "d" * 64


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[FakeOpenTip]:
    with fake_opentip() as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client_for(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float], **options: Any
) -> OpenTipClient:
    return OpenTipClient(
        api_key=fake.api_key,
        cache_path=tmp_path / "opentip.db",
        base_url=fake.base_url,
        sleep=sleeps.append,
        **options,
    )


def test_zones_and_verdicts_become_benign_only_when_green_and_known_good(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.answer("hash", CLEAN_SHA256, "Green", "Clean")
    fake.answer("hash", NO_THREATS_MD5, "Green", "NoThreats")
    fake.answer("hash", MALWARE_SHA1, "Red", "Malware")
    fake.answer("ip", "9.9.9.9", "Green", "known")
    fake.answer("ip", "203.0.113.9", "Grey", "NoInfo")
    fake.answer("domain", "example.com", "Green", "CATEGORY_INFORMATION_TECHNOLOGIES")
    fake.answer("domain", "fresh.example", "Green")  # green, but no category at all
    fake.answer("domain", "adware.example", "Yellow", "CATEGORY_ADWARE")
    fake.fail("domain", "gone.example", 404)
    queries = [
        ("hash", CLEAN_SHA256.upper()),
        ("hash", NO_THREATS_MD5),
        ("hash", MALWARE_SHA1),
        ("hash", UNKNOWN_SHA256),
        ("ip", "9.9.9.9"),
        ("ip", "203.0.113.9"),
        ("domain", "Example.COM."),
        ("domain", "fresh.example"),
        ("domain", "adware.example"),
        ("domain", "gone.example"),
    ]

    with client_for(fake, tmp_path, sleeps) as client:
        report = client.lookup(queries, limit=100)
        benign = {q for q, r in report.reputations.items() if client.policy.is_benign(r)}

    assert report.lookups == 10
    assert report.errors == []
    assert benign == {("hash", CLEAN_SHA256), ("ip", "9.9.9.9"), ("domain", "example.com")}
    assert report.reputations[("hash", UNKNOWN_SHA256)].zone == "Grey"
    assert report.reputations[("domain", "gone.example")].verdict == "NotFound"
    assert ("hash", CLEAN_SHA256) in fake.requests  # asked in canonical form


def test_grey_can_never_be_configured_as_benign() -> None:
    grey = Reputation("ip", "192.0.2.1", "Grey", "known", datetime.now(UTC))

    with pytest.raises(ValueError, match="Grey"):
        BenignPolicy(zones=frozenset({"Green", "Grey"}))
    assert not BenignPolicy().is_benign(grey)
    assert BenignPolicy(zones=frozenset({"Green", "Yellow"})).is_benign(
        Reputation("hash", "x", "Yellow", "Clean", datetime.now(UTC))
    )


def test_a_cached_answer_saves_a_request_until_its_ttl_runs_out(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.answer("ip", "9.9.9.9", "Green", "known")
    clock = Clock()

    with client_for(fake, tmp_path, sleeps, clock=clock, cache_ttl=timedelta(hours=24)) as client:
        first = client.lookup([("ip", "9.9.9.9")], limit=10)
        clock.now += timedelta(hours=23)
        second = client.lookup([("ip", "9.9.9.9")], limit=10)
    with client_for(fake, tmp_path, sleeps, clock=clock) as reopened:  # the file persists
        third = reopened.lookup([("ip", "9.9.9.9")], limit=10)
        clock.now += timedelta(hours=2)
        fourth = reopened.lookup([("ip", "9.9.9.9")], limit=10)

    assert (first.lookups, first.cached) == (1, 0)
    assert (second.lookups, second.cached) == (0, 1)
    assert (third.lookups, third.cached) == (0, 1)
    assert (fourth.lookups, fourth.cached) == (1, 0)
    assert fake.count("ip", "9.9.9.9") == 2
    assert second.reputations[("ip", "9.9.9.9")].zone == "Green"
    with closing(sqlite3.connect(tmp_path / "opentip.db")) as cache_file:
        assert cache_file.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_cache_answers_many_values_of_each_kind_and_only_fresh_ones(tmp_path: Path) -> None:
    clock = Clock()
    cache = OpenTipCache(tmp_path / "opentip.db", ttl=timedelta(hours=24), clock=clock)
    old = clock.now - timedelta(hours=30)
    ips = [f"10.0.{n // 256}.{n % 256}" for n in range(1200)]  # more than one query's worth
    cache.store(Reputation("ip", ip, "Green", "known", clock.now) for ip in ips)
    cache.store([Reputation("hash", CLEAN_SHA256, "Green", "Clean", clock.now)])
    cache.store([Reputation("domain", "stale.example", "Green", "Search engines", old)])

    asked = [("ip", ip) for ip in ips] + [
        ("hash", CLEAN_SHA256),
        ("domain", "stale.example"),  # older than the TTL
        ("ip", "192.0.2.1"),  # never cached
        ("hash", "10.0.0.1"),  # cached under another kind only
    ]
    found = cache.fresh(asked)
    cache.close()

    assert set(found) == {("ip", ip) for ip in ips} | {("hash", CLEAN_SHA256)}
    assert found[("ip", ips[-1])] == Reputation("ip", ips[-1], "Green", "known", clock.now)
    assert found[("hash", CLEAN_SHA256)].verdict == "Clean"


def test_quota_403_stops_the_run_is_reported_and_nothing_is_guessed(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.quota = 3
    values = [f"198.51.100.{n}" for n in range(1, 7)]
    for value in values:
        fake.answer("ip", value, "Green", "known")

    with client_for(fake, tmp_path, sleeps, concurrency=1) as client:
        spent = client.lookup([("ip", v) for v in values], limit=100)
        fake.quota = None  # a new day
        later = client.lookup([("ip", v) for v in values], limit=100)

    assert spent.lookups == 3
    assert spent.not_looked_up == 3
    assert spent.errors == ["OpenTIP quota exhausted (403) after 3 lookups"]
    assert len(spent.reputations) == 3
    assert len(fake.requests) == 3 + 1 + 3  # one 403, then only the three still missing
    assert (later.cached, later.lookups, later.errors) == (3, 3, [])
    assert sleeps == []


def test_a_refused_key_stops_at_once(fake: FakeOpenTip, tmp_path: Path) -> None:
    with OpenTipClient(
        api_key="wrong-key", cache_path=tmp_path / "c.db", base_url=fake.base_url
    ) as client:
        report = client.lookup([("ip", "192.0.2.1"), ("ip", "192.0.2.2")], limit=10)

    assert report.errors == ["OpenTIP API key refused (401) after 0 lookups"]
    assert report.not_looked_up == 2
    assert report.reputations == {}


def test_429_waits_as_retry_after_says_then_succeeds(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.throttled["example.org"] = 2
    fake.retry_after = "7"
    fake.answer("domain", "example.org", "Green", "CATEGORY_NEWS")

    with client_for(fake, tmp_path, sleeps) as client:
        report = client.lookup([("domain", "example.org")], limit=1)

    assert sleeps == [7.0, 7.0]
    assert fake.count("domain", "example.org") == 3
    assert report.lookups == 1
    assert report.errors == []


def test_without_retry_after_back_off_grows_with_jitter_and_is_bounded(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.retry_after = ""
    fake.throttled["example.net"] = 100
    fake.fail("hash", UNKNOWN_SHA256, 503)

    with client_for(fake, tmp_path, sleeps, max_retries=3) as client:
        report = client.lookup([("domain", "example.net"), ("hash", UNKNOWN_SHA256)], limit=5)

    assert fake.count("domain", "example.net") == 4
    assert fake.count("hash", UNKNOWN_SHA256) == 4
    assert len(sleeps) == 6
    for attempt, delay in enumerate(sorted(sleeps)[::2]):
        assert 2**attempt / 2 <= delay <= 2**attempt
    assert report.lookups == 0
    assert sorted(report.errors) == [
        "OpenTIP domain lookup of 'example.net' failed: HTTP 429",
        f"OpenTIP hash lookup of '{UNKNOWN_SHA256}' failed: HTTP 503",
    ]


def test_a_retry_after_longer_than_allowed_is_an_error_not_a_long_sleep(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.throttled["example.org"] = 1
    fake.retry_after = "3600"

    with client_for(fake, tmp_path, sleeps, max_wait_seconds=60) as client:
        report = client.lookup([("domain", "example.org")], limit=1)

    assert sleeps == []
    assert report.errors == ["OpenTIP domain lookup of 'example.org' failed: HTTP 429"]


@pytest.mark.parametrize("limit", [1, 3])
def test_requests_in_flight_never_exceed_the_concurrency_limit(
    tmp_path: Path, sleeps: list[float], limit: int
) -> None:
    # The first `limit` requests wait for each other, so the client must really run that
    # many at once; every request then stays in flight a moment, so any excess would overlap.
    with fake_opentip(hold_until_in_flight=limit, hold_seconds=0.05) as fake:
        client = client_for(fake, tmp_path, sleeps, concurrency=limit)
        with client:
            report = client.lookup([("ip", f"192.0.2.{n}") for n in range(9)], limit=100)

    assert report.lookups == 9
    assert fake.max_in_flight == limit


def test_remote_limit_counts_lookups_not_cache_hits(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    values = [("ip", f"192.0.2.{n}") for n in range(1, 6)]

    with client_for(fake, tmp_path, sleeps) as client:
        first = client.lookup(values, limit=2)
        second = client.lookup(values, limit=2)
        nothing = client.lookup(values, limit=0)

    assert (first.lookups, first.cached, first.not_looked_up) == (2, 0, 3)
    assert (second.lookups, second.cached, second.not_looked_up) == (2, 2, 1)
    assert (nothing.lookups, nothing.cached, nothing.not_looked_up) == (0, 4, 1)
    assert len(fake.requests) == 4


def test_classifier_asks_opentip_only_for_what_lists_left_undecided(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.answer("ip", "192.0.2.10", "Green", "known")
    fake.answer("domain", "cdn.example", "Green", "CATEGORY_CDN")
    fake.answer("hash", CLEAN_SHA256, "Green", "Clean")
    items = [
        ("ip-dst", "8.8.8.8"),  # the operator's list decides
        ("ip-dst|port", "192.0.2.10|443"),
        ("domain|ip", "cdn.example|192.0.2.10"),  # both parts vouched for
        ("domain|ip", "cdn.example|192.0.2.66"),  # the address is unknown: not benign
        ("filename|sha256", f"setup.exe|{CLEAN_SHA256}"),
        ("domain", "unknown.example"),
        ("url", "https://cdn.example/x"),  # not a type the fixer judges
    ]

    with client_for(fake, tmp_path, sleeps) as client:
        classifier = Classifier(
            common_false_positives=["8.8.8.8"], warninglists=None, opentip=client
        )
        result = classifier.classify(items, remote_limit=10)

    assert result.verdicts == {
        ("ip-dst", "8.8.8.8"): Verdict("list", "8.8.8.8"),
        ("ip-dst|port", "192.0.2.10|443"): Verdict("opentip", "Green/known"),
        ("domain|ip", "cdn.example|192.0.2.10"): Verdict(
            "opentip", "Green/CATEGORY_CDN + Green/known"
        ),
        ("filename|sha256", f"setup.exe|{CLEAN_SHA256}"): Verdict("opentip", "Green/Clean"),
    }
    assert sorted(fake.requests) == sorted(
        [
            ("ip", "192.0.2.10"),
            ("domain", "cdn.example"),
            ("ip", "192.0.2.66"),
            ("hash", CLEAN_SHA256),
            ("domain", "unknown.example"),
        ]
    )
    assert (result.lookups, result.cached, result.not_looked_up) == (5, 0, 0)


def test_classifier_reports_what_the_remote_limit_left_out(
    fake: FakeOpenTip, tmp_path: Path, sleeps: list[float]
) -> None:
    fake.quota = 1
    for n in range(4):
        fake.answer("domain", f"site{n}.example", "Green", "CATEGORY_NEWS")
    items = [("domain", f"site{n}.example") for n in range(4)]

    with client_for(fake, tmp_path, sleeps, concurrency=1) as client:
        classifier = Classifier(common_false_positives=[], warninglists=None, opentip=client)
        result = classifier.classify(items, remote_limit=3)

    assert result.verdicts == {
        ("domain", "site0.example"): Verdict("opentip", "Green/CATEGORY_NEWS")
    }
    assert result.lookups == 1
    assert result.not_looked_up == 3  # one over the limit, two after the quota ran out
    assert result.errors == ["OpenTIP quota exhausted (403) after 1 lookups"]
