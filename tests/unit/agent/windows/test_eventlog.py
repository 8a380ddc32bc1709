"""The Event Log collector stores each channel's events with its bookmark in one outbox
transaction, resumes after it across restarts, and reports channels it cannot read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.windows_eventlog import FakeEventLog
from tests.unit.agent.windows.samples import event_xml, logon

from puffin.agent.collectors import Collectors
from puffin.agent.outbox import Outbox
from puffin.agent.windows.eventlog import (
    DEFAULT_CHANNELS,
    EventLogCollector,
    EventLogConfig,
    EventLogError,
)

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def _collector(log: FakeEventLog, **config: Any) -> EventLogCollector:
    config.setdefault("channels", ["Security"])
    return EventLogCollector(EventLogConfig.from_mapping(config), log)


def _events(outbox: Outbox) -> list[dict[str, Any]]:
    rows = outbox._db.execute("SELECT body FROM event ORDER BY id").fetchall()
    return [json.loads(body) for (body,) in rows]


def _users(outbox: Outbox) -> list[str]:
    return [e["Event"]["EventData"]["TargetUserName"] for e in _events(outbox) if "Event" in e]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_events_are_stored_with_their_bookmark_and_a_restart_resumes_after_it(outbox):
    log = FakeEventLog({"Security": [logon(1, "alice"), logon(2, "bob"), logon(3, "carol")]})
    collector = _collector(log, start_at="oldest")
    assert collector.collect(outbox, now=0.0) == 3
    assert _users(outbox) == ["alice", "bob", "carol"]
    assert "RecordId='3'" in outbox.position("eventlog:Security")
    collector.close()
    assert not log.open

    log.append("Security", logon(4, "dave"), logon(5, "erin"))  # while the agent is down
    again = _collector(log, start_at="oldest")
    assert again.collect(outbox, now=0.0) == 2
    assert _users(outbox) == ["alice", "bob", "carol", "dave", "erin"]
    assert "RecordId='3'" in str(log.subscribes[-1]["bookmark"])
    assert log.subscribes[-1]["strict"] is True


def test_a_sent_event_has_the_evtx_shape_a_readable_line_and_its_own_time(outbox):
    log = FakeEventLog({"Security": [logon(1)]})
    _collector(log, start_at="oldest").collect(outbox, now=0.0)
    [event] = _events(outbox)
    system = event["Event"]["System"]
    assert system["EventID"] == 4624
    assert system["Channel"] == "Security"
    assert system["Execution"] == {"#attributes": {"ProcessID": 812, "ThreadID": 4000}}
    assert event["Event"]["EventData"]["LogonType"] == "3"
    assert event["timestamp"] == "2024-05-01T10:00:00.1234567Z"
    assert event["full_log"].startswith(
        "Security 4624 Microsoft-Windows-Security-Auditing on WS01.corp.example: "
        "TargetUserName=alice TargetDomainName=CORP LogonType=3"
    )


def test_starting_now_saves_the_newest_record_so_a_restart_before_any_event_misses_none(outbox):
    log = FakeEventLog({"Security": [logon(n) for n in range(1, 6)]})
    collector = _collector(log)  # start_at "now": the five old records are not sent
    assert collector.collect(outbox, now=0.0) == 0
    assert "RecordId='5'" in outbox.position("eventlog:Security")
    collector.close()
    log.append("Security", logon(6, "mallory"))
    assert _collector(log).collect(outbox, now=1.0) == 1
    assert _users(outbox) == ["mallory"]


def test_a_missing_channel_is_reported_once_and_read_when_it_appears(outbox):
    log = FakeEventLog({"Security": [logon(1)]})
    collector = _collector(log, channels=["Security", SYSMON], start_at="oldest",
                           retry_seconds=60)  # fmt: skip
    collector.collect(outbox, now=0.0)
    notices = [e for e in _events(outbox) if e.get("title") == "Channel not found"]
    assert [n["channel"] for n in notices] == [SYSMON]
    assert "tried again every 60 s" in notices[0]["full_log"]
    tries = len(log.subscribes)
    collector.collect(outbox, now=30.0)
    assert len(log.subscribes) == tries  # not before the retry time
    collector.collect(outbox, now=61.0)
    assert len(log.subscribes) == tries + 1
    assert len([e for e in _events(outbox) if e.get("title") == "Channel not found"]) == 1

    log.append(SYSMON, event_xml(SYSMON, 1, 1, {"Image": r"C:\Windows\System32\cmd.exe"}))
    collector.collect(outbox, now=122.0)
    last = _events(outbox)[-1]
    assert last["Event"]["EventData"]["Image"] == r"C:\Windows\System32\cmd.exe"


def test_a_refused_channel_says_the_agent_lacks_the_right(outbox):
    log = FakeEventLog({"Security": [logon(1)]})
    log.denied.add("Security")
    _collector(log).collect(outbox, now=0.0)
    [event] = _events(outbox)
    assert event["title"] == "Channel access denied"
    assert event["module"] == "windows-eventlog"
    assert "Event" not in event  # a notice, not a Windows event


def test_records_gone_after_the_bookmark_are_reported_and_reading_goes_on(outbox):
    log = FakeEventLog({"Security": [logon(1, "alice"), logon(2, "bob")]})
    collector = _collector(log, start_at="oldest")
    collector.collect(outbox, now=0.0)
    collector.close()
    log.append("Security", *[logon(n, f"user{n}") for n in range(3, 8)])
    log.overwrite_oldest("Security", 4)  # records 1-4 overwritten; 3 and 4 were never read

    again = _collector(log, start_at="oldest")
    again.collect(outbox, now=1.0)
    titles = [e.get("title") for e in _events(outbox)]
    assert "Records missing after the bookmark; events may have been lost" in titles
    again.collect(outbox, now=2.0)
    assert _users(outbox) == ["alice", "bob", "user5", "user6", "user7"]
    assert log.subscribes[-1]["strict"] is False
    again.close()
    log.append("Security", logon(8, "user8"))
    _collector(log).collect(outbox, now=3.0)
    assert log.subscribes[-1]["strict"] is True  # strict again once reading went on
    assert _users(outbox)[-1] == "user8"


def test_an_unusable_bookmark_is_reported_and_the_channel_read_from_its_oldest_record(outbox):
    log = FakeEventLog({"Security": [logon(1, "alice")]})
    outbox.add([], {"eventlog:Security": "<BookmarkList>garbage</BookmarkList>"})
    _collector(log).collect(outbox, now=0.0)
    events = _events(outbox)
    assert events[0]["title"] == "Saved bookmark unusable; reading from the oldest record"
    assert _users(outbox) == ["alice"]
    assert "RecordId='1'" in outbox.position("eventlog:Security")


def test_a_failed_outbox_write_reads_the_same_events_again(outbox, monkeypatch):
    log = FakeEventLog({"Security": [logon(1, "alice"), logon(2, "bob")]})
    collector = _collector(log, start_at="oldest")
    real_add = outbox.add
    calls = {"n": 0}

    def failing_add(events: Any, positions: Any = None) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk full")
        return real_add(events, positions)

    monkeypatch.setattr(outbox, "add", failing_add)
    with pytest.raises(OSError, match="disk full"):
        collector.collect(outbox, now=0.0)
    assert not log.open  # the subscription that moved past them was dropped
    collector.collect(outbox, now=1.0)
    assert _users(outbox) == ["alice", "bob"]


def test_a_burst_is_taken_in_batches_with_a_bound_per_turn(outbox):
    log = FakeEventLog({"Security": [logon(n, f"u{n}") for n in range(1, 451)]})
    collector = _collector(log, start_at="oldest", batch_size=200, max_per_turn=300)
    assert collector.collect(outbox, now=0.0) == 300
    assert "RecordId='300'" in outbox.position("eventlog:Security")
    assert collector.collect(outbox, now=1.0) == 150
    assert _users(outbox) == [f"u{n}" for n in range(1, 451)]


def test_an_event_that_is_not_xml_becomes_a_notice_with_its_text(outbox):
    log = FakeEventLog({"Security": ["<Event><System>broken", logon(2)]})
    _collector(log, start_at="oldest").collect(outbox, now=0.0)
    first, second = _events(outbox)
    assert first["title"] == "Event not rendered"
    assert first["full_log"] == "<Event><System>broken"
    assert second["Event"]["System"]["EventID"] == 4624


def test_a_channel_that_breaks_is_reopened_from_its_bookmark(outbox):
    log = FakeEventLog({"Security": [logon(1, "alice")]})
    collector = _collector(log, start_at="oldest", retry_seconds=5)
    collector.collect(outbox, now=0.0)
    log.broken["Security"] = EventLogError("Security: the RPC server is unavailable")
    collector.collect(outbox, now=1.0)
    assert _events(outbox)[-1]["title"] == "Channel cannot be read"
    del log.broken["Security"]
    log.append("Security", logon(2, "bob"))
    collector.collect(outbox, now=7.0)
    assert _users(outbox) == ["alice", "bob"]


def test_reconfiguring_keeps_unchanged_channels_open_and_closes_removed_ones(outbox):
    log = FakeEventLog({"Security": [logon(1)], "System": [event_xml("System", 7036, 1)]})
    collector = _collector(log, channels=["Security", "System"], start_at="oldest")
    collector.collect(outbox, now=0.0)
    opened = len(log.subscribes)
    collector.apply_config({"channels": ["Security"], "start_at": "oldest"})
    assert [s.name for s in log.open] == ["Security"]
    collector.apply_config({"channels": [{"name": "Security", "query": "*[System[EventID=4625]]"}]})
    collector.collect(outbox, now=1.0)
    assert len(log.subscribes) == opened + 1
    assert log.subscribes[-1]["query"] == "*[System[EventID=4625]]"


def test_the_configuration_is_checked_and_the_defaults_are_the_usual_channels():
    defaults = EventLogConfig.from_mapping({})
    assert [c.name for c in defaults.channels] == list(DEFAULT_CHANNELS)
    assert {"Security", "Windows PowerShell", SYSMON} <= set(DEFAULT_CHANNELS)
    for bad, reason in [
        ({"channels": "Security"}, "non-empty list"),
        ({"channels": ["Security", "Security"]}, "twice"),
        ({"channels": [""]}, "not valid"),
        ({"channels": ["Sec\nurity"]}, "control characters"),
        ({"channels": [{"name": "Security", "query": ""}]}, "XPath"),
        ({"start_at": "yesterday"}, "start_at"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": "many"}, "eventlog"),
    ]:
        with pytest.raises(ValueError, match=reason):
            EventLogConfig.from_mapping(bad)


@pytest.mark.skipif(__import__("sys").platform == "win32", reason="checks the non-Windows refusal")
def test_on_linux_the_section_is_refused_with_a_reason_and_nothing_else_stops(tmp_path):
    with pytest.raises(ValueError, match="only on Windows"):
        EventLogCollector.from_config({}, tmp_path)
    collectors = Collectors(tmp_path)
    collectors.configure({"eventlog": {}, "inventory": {"interval": 3600}}, local={})
    assert any("only on Windows" in problem for problem in collectors.problems)
    assert "inventory" in collectors.running
    collectors.close()


def test_the_factory_can_be_given_a_source(tmp_path, outbox):
    log = FakeEventLog({"Security": [logon(1)]})
    collector = EventLogCollector.from_config(
        {"channels": ["Security"], "start_at": "oldest"}, tmp_path, source_factory=lambda: log
    )
    assert collector.collect(outbox, now=0.0) == 1
