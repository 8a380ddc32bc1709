"""Recorded Windows events (SigmaHQ's regression `.evtx` files) go through the agent's path —
XML as `EvtRender` gives it, the EVTX-shape renderer, the Event Log collector and its
outbox, the server's batch normalisation — and come out as the evtx package's records do,
firing the same Sigma rules the same number of times.

The evtx package gives every record both as XML and as JSON. The one difference allowed
between our rendering of the XML and its JSON is the one XML cannot carry: the number and
boolean types of `EventData`/`UserData` values (text here, JSON numbers there; detection
compares text). See puffin.agent.windows.render.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import shared_data
from tests.fakes.windows_eventlog import FakeEventLog

from puffin.agent.outbox import Outbox
from puffin.agent.windows.eventlog import EventLogCollector, EventLogConfig
from puffin.agent.windows.render import render_event_xml
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import load_rules
from puffin.ingest.batches import to_new_events
from puffin.ingest.windows import flatten_evtx_record

evtx = pytest.importorskip("evtx")
SIGMA = shared_data() / "sigma"
REGRESSION = SIGMA / "regression_data"
FILES = sorted(REGRESSION.rglob("*.evtx")) if REGRESSION.is_dir() else []
FOLDERS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir")
TYPED_SYSTEM_FIELDS = {
    "EventID", "Version", "Level", "Task", "Opcode", "EventRecordID", "ExecutionProcessID",
    "ExecutionThreadID",
}  # fmt: skip

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not FILES, reason="../shared/data/sigma/regression_data is absent"),
]


def _as_text(value: Any) -> Any:
    """Write JSON numbers and booleans as the text XML has for them."""
    if isinstance(value, dict):
        return {key: _as_text(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_text(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _expected(record_json: str) -> dict[str, Any]:
    """Return the evtx JSON with EventData/UserData values as text (the one allowed change)."""
    record = json.loads(record_json)
    for section in ("EventData", "UserData"):
        if section in record["Event"]:
            record["Event"][section] = _as_text(record["Event"][section])
    return record


def _records(path: Path) -> list[tuple[str, str]]:
    """Return (XML, JSON) for every record of one file, checked to be the same records."""
    as_xml = list(evtx.PyEvtxParser(str(path)).records())
    as_json = list(evtx.PyEvtxParser(str(path)).records_json())
    assert [r["event_record_id"] for r in as_xml] == [r["event_record_id"] for r in as_json]
    return [(x["data"], j["data"]) for x, j in zip(as_xml, as_json, strict=True)]


@pytest.fixture(scope="module")
def recorded() -> dict[Path, list[tuple[str, str]]]:
    return {path: _records(path) for path in FILES}


def test_every_recorded_event_renders_to_the_evtx_json_of_the_same_record(recorded):
    count = 0
    for path, records in recorded.items():
        for xml, record_json in records:
            assert render_event_xml(xml) == _expected(record_json), path
            count += 1
    assert count >= len(FILES) >= 200


def test_rendered_events_flatten_to_the_canonical_fields_of_the_evtx_records(recorded):
    for path, records in recorded.items():
        for xml, record_json in records:
            ours = flatten_evtx_record(render_event_xml(xml))
            theirs = flatten_evtx_record(json.loads(record_json))
            assert _as_text(ours) == _as_text(theirs), path
            for key in TYPED_SYSTEM_FIELDS & theirs.keys():
                assert ours[key] == theirs[key], key
                assert type(ours[key]) is type(theirs[key]), key
            assert isinstance(ours["EventID"], int)
            for key in ("Channel", "Computer", "Provider_Name", "TimeCreated", "EventRecordID"):
                assert ours[key] not in (None, ""), (path, key)


def _replay(
    recorded: dict[Path, list[tuple[str, str]]], tmp_path: Path
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Put the records in a fake Event Log by channel and collect them with two restarts."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for records in recorded.values():
        for xml, record_json in records:
            channel = json.loads(record_json)["Event"]["System"]["Channel"]
            by_channel[channel].append(xml)
    log = FakeEventLog(dict(by_channel))
    expected = {
        channel: [render_event_xml(xml) for xml in items] for channel, items in by_channel.items()
    }
    config = EventLogConfig.from_mapping(
        {"channels": [*by_channel, "Application"], "start_at": "oldest", "batch_size": 40,
         "max_per_turn": 80}
    )  # fmt: skip
    outbox = Outbox(tmp_path / "outbox.db")
    sent: list[dict[str, Any]] = []
    for turn in range(3):  # a restart between turns: new collector, same outbox
        collector = EventLogCollector(config, log)
        for tick in range(10):
            collector.collect(outbox, now=float(turn * 100 + tick))
        collector.close()
        while (batch := outbox.next_batch(100)) is not None:
            sent += batch.events
            outbox.acknowledge(batch)
    outbox.close()
    return expected, sent


def test_replayed_through_the_collector_each_event_reaches_the_server_once(recorded, tmp_path):
    expected, sent = _replay(recorded, tmp_path)
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in sent:
        if "Event" in event:
            by_channel[event["Event"]["System"]["Channel"]].append({"Event": event["Event"]})
    assert by_channel == expected  # every record once, in its channel's order
    assert sum(map(len, expected.values())) >= 200
    notices = [event for event in sent if "Event" not in event]
    # Once per start of the collector (three here), not once per retry.
    assert [(n["title"], n["channel"]) for n in notices] == [
        ("Channel not found", "Application")
    ] * 3

    stored = to_new_events(sent)  # the server's own validation and normalisation
    assert len(stored) == len(sent)
    for new_event, event in zip(stored, sent, strict=True):
        if "Event" not in event:
            continue
        data = new_event.data
        assert data["module"] == "windows-eventlog"
        assert data["Channel"] == event["Event"]["System"]["Channel"]
        assert data["EventID"] == event["Event"]["System"]["EventID"]
        assert data["full_log"].startswith(f"{data['Channel']} {data['EventID']} ")
        assert new_event.event_time is not None
        assert new_event.location == data["Channel"]


def _rule_cases() -> list[tuple[str, str]]:
    cases = []
    for info in sorted(REGRESSION.rglob("info.yml")) if REGRESSION.is_dir() else []:
        data = yaml.safe_load(info.read_text("utf-8"))
        for test in data.get("regression_tests_info") or []:
            if test.get("type") == "evtx":
                cases.append((data["rule_metadata"][0]["id"], test["path"]))
    return cases


CASES = _rule_cases()


@pytest.fixture(scope="module")
def regression_rules() -> dict[str, Any]:
    files = [
        path
        for folder in FOLDERS
        for path in sorted((SIGMA / folder).rglob("*.yml"))
        if "regression_tests_path" in path.read_text("utf-8")
    ]
    loaded = load_rules(files)
    assert not loaded.problems
    return {rule.id: rule for rule in loaded.rules}


def test_each_regression_rule_fires_as_often_on_agent_events_as_on_evtx_records(
    regression_rules, recorded
):
    assert len(CASES) >= 200
    fired = 0
    for rule_id, relative in CASES:
        engine = RuleSet([regression_rules[rule_id]])
        records = recorded[SIGMA / relative]
        from_json = sum(
            len(engine.evaluate(flatten_evtx_record(json.loads(j)))) for _, j in records
        )
        agent_events = [
            {**render_event_xml(x), "full_log": "", "timestamp": ""} for x, _ in records
        ]
        from_agent = sum(len(engine.evaluate(e.data)) for e in to_new_events(agent_events))
        assert from_agent == from_json, rule_id
        fired += from_agent > 0
        assert not engine.errors, rule_id
    assert fired == len(CASES)
