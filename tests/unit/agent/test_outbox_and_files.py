"""The agent's outbox keeps batches until acknowledged, across restarts; the file tailer
follows truncation and never re-reads lines."""

from __future__ import annotations

from puffin.agent.files import FileTailer, LogSource
from puffin.agent.outbox import Outbox


def test_a_batch_keeps_its_sequence_until_acknowledged_even_after_a_restart(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    outbox.add([{"n": i} for i in range(5)])
    first = outbox.next_batch(3)
    outbox.close()  # the agent dies before the server answers

    reopened = Outbox(tmp_path / "o.db")
    again = reopened.next_batch(3)
    assert (again.sequence, again.events) == (first.sequence, first.events)
    reopened.acknowledge(again)
    rest = reopened.next_batch(3)
    assert rest.sequence == first.sequence + 1
    assert [e["n"] for e in rest.events] == [3, 4]
    reopened.acknowledge(rest)
    assert reopened.next_batch() is None
    assert reopened.counters() == {"queued": 0, "sent": 5, "dropped": 0, "quarantined": 0}


def test_events_and_positions_are_committed_together(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    outbox.add([{"n": 1}], {"file:/x": "7:10"})
    assert outbox.position("file:/x") == "7:10"
    outbox.close()
    assert Outbox(tmp_path / "o.db").position("file:/x") == "7:10"


def test_a_full_outbox_drops_new_events_and_says_so(tmp_path):
    outbox = Outbox(tmp_path / "o.db", max_events=3)
    outbox.add([{"n": i} for i in range(5)])
    batch = outbox.next_batch(10)
    assert [e.get("n") for e in batch.events[:3]] == [0, 1, 2]
    assert batch.events[-1]["title"] == "events dropped"
    assert batch.events[-1]["dropped"] == 2
    assert outbox.counters()["dropped"] == 2


def test_the_tailer_reads_only_new_complete_lines_and_follows_truncation(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("one\ntwo\npart")
    outbox = Outbox(tmp_path / "o.db")
    tailer = FileTailer(outbox)
    source = LogSource(str(log), "plain")
    assert tailer.poll(source) == 2
    assert tailer.poll(source) == 0
    with log.open("a") as handle:
        handle.write("ial\nthree\n")
    assert tailer.poll(source) == 2
    log.write_text("after truncate\n")  # copy-truncate rotation
    assert tailer.poll(source) == 1
    tailer.close()
    logs = [e["full_log"] for e in outbox.next_batch(50).events]
    assert logs == ["one", "two", "partial", "three", "after truncate"]


def test_json_lines_keep_their_fields(tmp_path):
    log = tmp_path / "app.json"
    log.write_text('{"user": "bob", "action": "login"}\nnot json\n')
    outbox = Outbox(tmp_path / "o.db")
    tailer = FileTailer(outbox)
    tailer.poll(LogSource(str(log), "json"))
    tailer.close()
    first, second = outbox.next_batch().events
    assert (first["user"], first["action"]) == ("bob", "login")
    assert second["json_error"] is True
