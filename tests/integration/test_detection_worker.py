"""The live detection worker turns stored events into alerts exactly once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from puffin.alert import service as alert_service
from puffin.alert.schemas import AlertFilter, StagedFilter
from puffin.app import build_state, prepare_database
from puffin.auth import service as auth_service
from puffin.core.db import transaction
from puffin.core.pagination import PageParams
from puffin.core.settings import Settings
from puffin.detection import settings_service
from puffin.ingest.store import EventStore, NewEvent
from puffin.worker.detection import AlertPolicy, DetectionWorker


@dataclass(frozen=True)
class Hit:
    rule_id: str
    title: str
    level: str
    tags: tuple[str, ...] = ()
    matched: dict[str, Any] = field(default_factory=dict)


class FailedPasswordRule:
    """A stand-in evaluator: one rule on sshd failures, one that always raises."""

    def __init__(self) -> None:
        self.calls = 0

    def evaluate(self, event):
        self.calls += 1
        if event.get("boom"):
            raise RuntimeError("engine bug")
        if event.get("program") == "sshd" and event.get("outcome") == "failure":
            return [
                Hit(
                    "r-ssh",
                    "SSH failure",
                    "high",
                    ("attack.credential_access",),
                    {"program": "sshd"},
                )
            ]
        return []


@pytest.fixture
def state(tmp_path):
    app_state = build_state(Settings(data_dir=tmp_path, environment="test", tls=False))
    prepare_database(app_state, lambda _: None)
    app_state.extras["event_store"].create_schema()
    with transaction(app_state.session_factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
    app_state.extras["org"] = org.id
    return app_state


def _alerts(state):
    with transaction(state.session_factory) as session:
        return alert_service.list_alerts(
            session=session,
            organisation_id=state.extras["org"],
            alert_filter=AlertFilter(staged=StagedFilter.INCLUDE),
            page=PageParams(),
        )


def _store_failures(state, count: int, **extra) -> None:
    store: EventStore = state.extras["event_store"]
    store.append(
        organisation_id=state.extras["org"],
        source_id=uuid.uuid4(),
        events=[
            NewEvent(
                data={"program": "sshd", "outcome": "failure", "src_ip": f"10.0.0.{i % 2}", **extra}
            )
            for i in range(count)
        ],
    )


def test_each_event_raises_its_alert_once_across_restarts(state):
    _store_failures(state, 3)
    worker = DetectionWorker(state.extras["event_store"], state.session_factory, FailedPasswordRule)
    assert worker.run_once() == 3
    assert worker.run_once() == 0
    again = DetectionWorker(state.extras["event_store"], state.session_factory, FailedPasswordRule)
    assert again.run_once() == 0
    page = _alerts(state)
    assert page.total == 3
    assert page.items[0].tactics == ["credential-access"]


def test_dedupe_policy_folds_repeats_by_field(state):
    _store_failures(state, 6)
    worker = DetectionWorker(
        state.extras["event_store"],
        state.session_factory,
        FailedPasswordRule,
        policy_for=lambda rule_id: AlertPolicy(("src_ip",), 600),
    )
    worker.run_once()
    page = _alerts(state)
    assert page.total == 2
    assert sorted(a.hits for a in page.items) == [3, 3]


def test_disabled_rules_raise_nothing_and_staged_rules_are_marked(state):
    org = state.extras["org"]
    with transaction(state.session_factory) as session:
        settings_service.set_switch(
            session=session, organisation_id=org, rule_id="r-ssh", staged=True
        )
    _store_failures(state, 1)
    worker = DetectionWorker(state.extras["event_store"], state.session_factory, FailedPasswordRule)
    worker.run_once()
    assert [a.staged for a in _alerts(state).items] == [True]
    with transaction(state.session_factory) as session:
        settings_service.set_switch(
            session=session, organisation_id=org, rule_id="r-ssh", enabled=False
        )
    _store_failures(state, 1)
    worker.run_once()
    assert _alerts(state).total == 1


def test_an_event_that_breaks_the_engine_does_not_stop_the_stream(state):
    _store_failures(state, 1, boom=True)
    _store_failures(state, 1)
    worker = DetectionWorker(state.extras["event_store"], state.session_factory, FailedPasswordRule)
    assert worker.run_once() == 2
    assert worker.stats.errors == 1
    assert _alerts(state).total == 1


def test_dedupe_windows_hold_within_one_batch_and_across_batches(state):
    """Folds are decided per event, in order, whether or not the alert is from this batch."""
    store: EventStore = state.extras["event_store"]
    source = uuid.uuid4()
    start = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)

    def store_at(*minutes: int) -> None:
        store.append(
            organisation_id=state.extras["org"],
            source_id=source,
            events=[
                NewEvent(
                    data={"program": "sshd", "outcome": "failure", "src_ip": "10.0.0.1"},
                    event_time=start + timedelta(minutes=minute),
                )
                for minute in minutes
            ],
        )

    worker = DetectionWorker(
        store,
        state.session_factory,
        FailedPasswordRule,
        policy_for=lambda rule_id: AlertPolicy(("src_ip",), 600),
    )
    # One batch: minute 5 folds into minute 0's new alert; minute 12 is past its window.
    store_at(0, 5, 12)
    assert worker.run_once() == 3
    # A later batch folds into the newest alert whose window is still open.
    store_at(20)
    assert worker.run_once() == 1
    assert (worker.stats.alerts_created, worker.stats.alerts_folded) == (2, 2)
    page = _alerts(state)
    by_first_seen = sorted((a.first_seen, a.hits) for a in page.items)
    assert by_first_seen == [(start, 2), (start + timedelta(minutes=12), 2)]
