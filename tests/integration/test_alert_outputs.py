"""The one forwarding hook: new live alerts reach every output after commit, and only then."""

from __future__ import annotations

import pytest

from puffin.alert import service as alert_service
from puffin.alert.outputs import AlertForwarded, AlertOutputs
from puffin.alert.schemas import Detection, Level
from puffin.app import build_state, prepare_database
from puffin.auth import service as auth_service
from puffin.core.db import transaction
from puffin.core.settings import Settings


@pytest.fixture
def state(tmp_path):
    app_state = build_state(Settings(data_dir=tmp_path, environment="test", tls=False))
    prepare_database(app_state, lambda _: None)
    with transaction(app_state.session_factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
    app_state.extras["org"] = org.id
    yield app_state
    app_state.engine.dispose()


def _detection(**extra) -> Detection:
    values = {
        "rule_id": "r-1",
        "rule_title": "Root login over SSH",
        "level": Level.HIGH,
        "event": {"src_ip": "192.0.2.1"},
        **extra,
    }
    return Detection(**values)


def _raise(state, outputs: AlertOutputs, detection: Detection):
    with transaction(state.session_factory) as session:
        alert, created = alert_service.raise_alert(
            session=session,
            organisation_id=state.extras["org"],
            detection=detection,
            outputs=outputs,
        )
    return alert, created


def test_a_new_live_alert_is_forwarded_once_after_commit_and_a_fold_is_not(state):
    outputs = AlertOutputs()
    seen: list[AlertForwarded] = []
    outputs.register("seen", seen.append)
    folding = {"dedupe_fields": ["src_ip"], "dedupe_window_seconds": 600}
    alert, created = _raise(state, outputs, _detection(**folding))
    again, folded = _raise(state, outputs, _detection(**folding))
    assert (created, folded) == (True, False)
    assert again.id == alert.id
    assert [(f.alert.id, f.organisation_id) for f in seen] == [(alert.id, state.extras["org"])]
    assert outputs.stats.forwarded == 1


def test_staged_alerts_are_stored_but_reach_no_output(state):
    outputs = AlertOutputs()
    seen: list[AlertForwarded] = []
    outputs.register("seen", seen.append)
    alert, created = _raise(state, outputs, _detection(staged=True))
    assert created
    assert alert.staged
    assert seen == []


def test_an_alert_whose_transaction_rolls_back_is_not_forwarded(state):
    outputs = AlertOutputs()
    seen: list[AlertForwarded] = []
    outputs.register("seen", seen.append)

    def fail_after_the_alert() -> None:
        with transaction(state.session_factory) as session:
            alert_service.raise_alert(
                session=session,
                organisation_id=state.extras["org"],
                detection=_detection(),
                outputs=outputs,
            )
            raise RuntimeError("the batch failed after the alert was flushed")

    with pytest.raises(RuntimeError):
        fail_after_the_alert()
    assert seen == []
    _raise(state, outputs, _detection(rule_id="r-2"))
    assert [f.alert.rule_id for f in seen] == ["r-2"]


def test_an_output_that_raises_is_counted_and_the_others_still_get_the_alert(state):
    outputs = AlertOutputs()
    seen: list[AlertForwarded] = []

    def broken(_: AlertForwarded) -> None:
        raise ConnectionError("the mail server is down")

    outputs.register("broken", broken)
    outputs.register("seen", seen.append)
    with pytest.raises(ValueError, match="already"):
        outputs.register("seen", seen.append)
    _raise(state, outputs, _detection())
    assert len(seen) == 1
    assert outputs.stats.failures == {"broken": 1}
    assert outputs.names == ("broken", "seen")
