"""File integrity monitoring on real files: a silent first baseline, then added, modified
and deleted events that say what changed, real-time inotify, and scans in small steps."""

from __future__ import annotations

import hashlib
import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from puffin.agent.fim import FimCollector
from puffin.agent.fim_inotify import (
    IN_CREATE,
    IN_ISDIR,
    IN_Q_OVERFLOW,
    InotifyWatcher,
    parse_events,
)
from puffin.agent.outbox import Outbox


@pytest.fixture
def watched(tmp_path: Path) -> Path:
    folder = tmp_path / "watched"
    (folder / "sub").mkdir(parents=True)
    (folder / "hosts").write_text("127.0.0.1 localhost\n")
    (folder / "sub" / "app.conf").write_text("".join(f"line {n}\n" for n in range(30)))
    (folder / "tool").write_bytes(b"\x7fELF\0\0binary" * 100)
    return folder


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.db")


def make(tmp_path: Path, **config: Any) -> FimCollector:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return FimCollector.from_config(config, state)


def drain(outbox: Outbox) -> list[dict[str, Any]]:
    events = []
    while (batch := outbox.next_batch(1000)) is not None:
        events.extend(batch.events)
        outbox.acknowledge(batch)
    return events


def scan(collector: FimCollector, outbox: Outbox, now: float = 0.0) -> list[dict[str, Any]]:
    """Run one whole scheduled scan (due at `now`) and return the events it produced."""
    collector.collect(outbox, now)
    while collector.scanning:
        collector.collect(outbox, now)
    return drain(outbox)


def changes(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["path"]: e for e in events if e["fim_event"] in ("added", "modified", "deleted")}


def test_the_first_scan_builds_the_baseline_silently(tmp_path, watched, outbox):
    events = scan(make(tmp_path, paths=[str(watched)]), outbox)
    assert [e["fim_event"] for e in events] == ["baseline"]
    assert events[0]["files"] == 3
    assert "baseline built: 3 files" in events[0]["full_log"]


def test_later_scans_report_added_modified_and_deleted_files(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    (watched / "new.txt").write_text("fresh\n")
    (watched / "hosts").write_text("127.0.0.1 localhost\n10.0.0.9 evil\n")
    (watched / "tool").unlink()

    found = changes(scan(collector, outbox, now=100))
    added, modified, deleted = (
        found[str(watched / "new.txt")],
        found[str(watched / "hosts")],
        found[str(watched / "tool")],
    )
    assert (added["fim_event"], added["title"]) == ("added", "File added")
    assert added["sha256"] == hashlib.sha256(b"fresh\n").hexdigest()
    assert modified["title"] == "File modified"
    assert {"sha256", "size"} <= set(modified["changed"])
    assert modified["size_before"] == 20
    assert modified["size"] == 34
    assert modified["sha256_before"] == hashlib.sha256(b"127.0.0.1 localhost\n").hexdigest()
    assert "+10.0.0.9 evil" in modified["diff"]
    assert "size 20 -> 34" in modified["full_log"]
    assert deleted["fim_event"] == "deleted"
    assert deleted["mode_source"] == "scheduled"
    assert len(found) == 3  # the unchanged file says nothing
    assert scan(collector, outbox, now=200) == []


def test_a_permission_change_names_the_mode_only(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    os.chmod(watched / "hosts", 0o4777)
    event = changes(scan(collector, outbox, now=100))[str(watched / "hosts")]
    assert event["changed"] == ["mode"]
    assert (event["mode_before"], event["mode"]) == ("0644", "4777")
    assert "diff" not in event


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_an_owner_change_names_uid_and_owner(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    os.chown(watched / "hosts", 1, -1)
    event = changes(scan(collector, outbox, now=100))[str(watched / "hosts")]
    assert set(event["changed"]) == {"uid", "owner"}
    assert (event["uid_before"], event["uid"]) == (0, 1)


def test_no_diff_for_binary_files_or_secrets(tmp_path, watched, outbox):
    (watched / "ssh_host_ed25519_key").write_text("PRIVATE one\n")
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    (watched / "tool").write_bytes(b"\x7fELF\0\0patched" * 100)
    (watched / "ssh_host_ed25519_key").write_text("PRIVATE two\n")
    found = changes(scan(collector, outbox, now=100))
    assert "sha256" in found[str(watched / "tool")]["changed"]
    assert "diff" not in found[str(watched / "tool")]
    assert "diff" not in found[str(watched / "ssh_host_ed25519_key")]
    assert "PRIVATE" not in str(found)


def test_a_long_diff_is_cut(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    (watched / "sub" / "app.conf").write_text("".join(f"other {n}\n" for n in range(30)))
    event = changes(scan(collector, outbox, now=100))[str(watched / "sub" / "app.conf")]
    lines = event["diff"].splitlines()
    assert len(lines) == 41
    assert lines[-1].startswith("... (")


def test_files_larger_than_diff_max_bytes_have_no_diff(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100, diff_max_bytes=10)
    scan(collector, outbox)
    (watched / "hosts").write_text("changed but long\n")
    assert "diff" not in changes(scan(collector, outbox, now=100))[str(watched / "hosts")]


def test_ignored_files_are_never_reported(tmp_path, watched, outbox):
    ignore = ["*.swp", str(watched / "sub") + "/*"]
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100, ignore=ignore)
    events = scan(collector, outbox)
    assert events[0]["files"] == 2  # hosts and tool; sub/app.conf is ignored
    (watched / ".hosts.swp").write_text("x")
    (watched / "sub" / "app.conf").write_text("changed")
    (watched / "hosts").write_text("changed")
    assert list(changes(scan(collector, outbox, now=100))) == [str(watched / "hosts")]


def test_the_baseline_survives_a_restart(tmp_path, watched, outbox):
    first = make(tmp_path, paths=[str(watched)])
    scan(first, outbox)
    first.close()
    (watched / "hosts").write_text("after restart\n")

    second = make(tmp_path, paths=[str(watched)])
    events = scan(second, outbox)
    assert [e["fim_event"] for e in events] == ["modified"]
    assert "-127.0.0.1 localhost" in events[0]["diff"]


def test_a_change_survives_an_outbox_failure_and_is_delivered_once(tmp_path, watched, outbox):
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    (watched / "hosts").write_text("tampered\n")

    class BrokenOutbox(Outbox):
        def add(self, events, positions=None):
            raise OSError("disk full")

    broken = BrokenOutbox(tmp_path / "outbox.db")
    with pytest.raises(OSError):
        collector.collect(broken, 100)  # the baseline moved on, the event is kept aside
    collector.close()

    again = make(tmp_path, paths=[str(watched)], scan_interval=100)
    events = scan(again, outbox, now=0)
    assert [e["fim_event"] for e in events] == ["modified"]
    again.close()
    assert scan(make(tmp_path, paths=[str(watched)]), outbox) == []


def test_a_scan_over_many_files_spans_many_collect_calls(tmp_path, outbox):
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(3000):
        (folder / f"f{number}").write_text(str(number))
    big = folder / "big.bin"
    big.write_bytes(os.urandom(5 * 1024 * 1024 + 7))
    collector = make(tmp_path, paths=[str(folder)], budget_seconds=0)
    calls = 0
    while calls == 0 or collector.scanning:
        collector.collect(outbox, 0)
        calls += 1
    assert calls >= 3001 + 5  # one step per file, one per MiB chunk of the big one
    assert drain(outbox)[0]["files"] == 3001
    big.write_bytes(big.read_bytes()[:-1])
    event = changes(scan(collector, outbox, now=50000))[str(big)]
    assert event["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()


def test_new_and_removed_paths_apply_without_a_restart(tmp_path, watched, outbox):
    other = tmp_path / "other"
    other.mkdir()
    (other / "a").write_text("a")
    collector = make(tmp_path, paths=[str(watched)], scan_interval=100)
    scan(collector, outbox)
    collector.apply_config({"paths": [str(other)], "scan_interval": 100})
    events = scan(collector, outbox)
    assert [(e["fim_event"], e["path"]) for e in events] == [("baseline", str(other))]
    (watched / "hosts").write_text("no longer watched")
    assert scan(collector, outbox, now=100) == []


def wait_for(collector: FimCollector, outbox: Outbox, wanted, seconds: float = 5.0) -> list:
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        collector.collect(outbox, 1.0)
        events.extend(drain(outbox))
        if any(wanted(e) for e in events):
            return events
        time.sleep(0.05)
    return events


def test_realtime_changes_arrive_without_a_scan(tmp_path, watched, outbox):
    collector = make(tmp_path, realtime=[str(watched)], paths=[], scan_interval=10**9)
    scan(collector, outbox)
    (watched / "sub" / "app.conf").write_text("edited live\n")
    events = wait_for(collector, outbox, lambda e: e.get("fim_event") == "modified")
    event = changes(events)[str(watched / "sub" / "app.conf")]
    assert event["mode_source"] == "realtime"
    assert "+edited live" in event["diff"]

    (watched / "newdir").mkdir()
    (watched / "newdir" / "dropped").write_text("payload")
    events = wait_for(collector, outbox, lambda e: e.get("path", "").endswith("dropped"))
    assert changes(events)[str(watched / "newdir" / "dropped")]["fim_event"] == "added"

    (watched / "newdir" / "dropped").unlink()
    events = wait_for(collector, outbox, lambda e: e.get("fim_event") == "deleted")
    assert changes(events)[str(watched / "newdir" / "dropped")]["fim_event"] == "deleted"
    collector.close()


def test_a_realtime_event_that_changes_nothing_says_nothing(tmp_path, watched, outbox):
    collector = make(tmp_path, realtime=[str(watched)], paths=[], scan_interval=10**9)
    scan(collector, outbox)
    os.chmod(watched / "hosts", 0o644)  # IN_ATTRIB, same mode
    stat = os.stat(watched / "tool")
    (watched / "tool").write_bytes((watched / "tool").read_bytes())  # IN_MODIFY, same bytes
    os.utime(watched / "tool", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.chmod(watched / "sub" / "app.conf", 0o600)  # a real change, to know events flowed
    events = wait_for(collector, outbox, lambda e: e.get("fim_event") == "modified")
    assert list(changes(events)) == [str(watched / "sub" / "app.conf")]
    collector.close()


def test_the_inotify_parser_reads_names_and_overflow():
    name = b"passwd\0\0\0\0\0\0\0\0\0\0"
    buffer = struct.pack("iIII", 3, IN_CREATE, 0, len(name)) + name
    buffer += struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)
    created, overflow = parse_events(buffer)
    assert (created.wd, created.mask, created.name) == (3, IN_CREATE, "passwd")
    assert (overflow.wd, overflow.mask, overflow.name) == (-1, IN_Q_OVERFLOW, "")


def test_a_directory_created_under_a_watch_is_watched_too(tmp_path):
    watcher = InotifyWatcher()
    watcher.watch_tree(str(tmp_path))
    (tmp_path / "late").mkdir()
    name = b"late\0\0\0\0"
    watcher.feed(struct.pack("iIII", 1, IN_CREATE | IN_ISDIR, 0, len(name)) + name)
    assert watcher.watched == 2
    watcher.close()


def test_a_queue_overflow_rescans_the_realtime_paths(tmp_path, watched, outbox):
    collector = make(tmp_path, realtime=[str(watched)], paths=[], scan_interval=10**9)
    scan(collector, outbox)
    (watched / "tool").unlink()
    overflow = InotifyWatcher()
    collector.handle_changes(overflow.feed(struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)))
    overflow.close()
    events = wait_for(collector, outbox, lambda e: e.get("fim_event") == "deleted")
    notices = [e for e in events if e["fim_event"] == "overflow"]
    assert len(notices) == 1
    assert str(watched) in notices[0]["full_log"]
    assert [e["fim_event"] for e in events].count("deleted") == 1  # rescan and inotify agree
    collector.close()
