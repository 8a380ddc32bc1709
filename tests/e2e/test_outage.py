"""Outages: every line an agent collects reaches the event store exactly once.

A real `puffin server run` and a real `python -m puffin.agent run` on loopback, the agent
talking through a TCP relay (`tests.e2e.relay`) that can hold either direction, so each
kill is shown to land in the middle of a batch rather than hoped to:

- (a) the server is stopped and 100,000 lines are written while it is down; the agent
  keeps them in its outbox and delivers them when the server is back;
- (b) the agent is killed with SIGKILL twice mid-batch: once after the server stored a
  batch whose acknowledgement the agent never saw (the resend must not be stored twice),
  once while a batch was on its way and the server had not received all of it;
- (c) the server is killed with SIGKILL after storing a batch whose acknowledgement is
  still on its way, while the agent is alive and waiting for it: every batch the agent saw
  acknowledged is on disk, and the resend is not stored twice.

Each kill is proved from the two databases on disk: the agent's outbox still holds the
batch as unacknowledged, and the event store does (or does not) hold its sequence. Each
line carries a unique number, and the store must hold every number exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from tests.e2e.relay import Relay
from tests.e2e.test_agent_delivery import _agent, _api_key
from tests.e2e.test_server_https import _free_port, _wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BEFORE_OUTAGE = 10_000
OUTAGE_LINES = 100_000
BACKLOG = 20_000
WAIT_SECONDS = 120

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """The batch an agent's outbox holds as sent but not acknowledged."""

    sequence: int
    first_id: int
    lines: list[int]


@dataclass
class Rig:
    """The server, the agent, the relay between them and the file the agent follows."""

    root: Path
    port: int
    relay: Relay
    server: subprocess.Popen[bytes] | None = None
    agent: subprocess.Popen[bytes] | None = None
    agent_id: str = ""
    written: int = 0
    last_trapped: int = 0
    kills: list[str] = field(default_factory=list)

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def agent_dir(self) -> Path:
        return self.root / "agent"

    @property
    def log(self) -> Path:
        return self.root / "app.log"

    def write(self, count: int) -> None:
        """Append `count` numbered lines to the followed file."""
        lines = (f"outage line {i:07d}\n" for i in range(self.written, self.written + count))
        with self.log.open("a") as handle:
            handle.write("".join(lines))
        self.written += count

    def start_server(self) -> None:
        env = {
            **os.environ,
            "PUFFIN_DATA_DIR": str(self.server_dir),
            "PUFFIN_PORT": str(self.port),
        }
        env.pop("PUFFIN_CONFIG", None)
        with (self.root / "server.out").open("ab") as output:  # a pipe could fill and block it
            self.server = subprocess.Popen(
                [sys.executable, "-m", "puffin.cli.main", "server", "run"],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.server_dir,
            )
        _wait_ready(self.server_dir, self.port)

    def end_server(self, sig: signal.Signals) -> None:
        assert self.server is not None
        self.server.send_signal(sig)
        self.server.wait(timeout=60)
        self.server = None

    def start_agent(self) -> None:
        with (self.root / "agent.out").open("ab") as output:
            self.agent = subprocess.Popen(
                [
                    *(sys.executable, "-m", "puffin.agent", "run"),
                    *("--state-dir", str(self.agent_dir), "--log", str(self.log)),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def kill_agent(self) -> None:
        assert self.agent is not None
        self.agent.kill()
        assert self.agent.wait(timeout=30) == -signal.SIGKILL
        self.agent = None


def _until(probe: Callable[[], T | None], what: str, pause: float = 0.005) -> T:
    """Return the probe's first true answer; fail (not a timing check) if it never comes."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            answer = probe()
        except sqlite3.OperationalError:  # the agent has not created its outbox yet
            answer = None
        if answer not in (None, False):
            return answer  # type: ignore[return-value]
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(pause)


def _open(path: Path) -> sqlite3.Connection:
    """Open a database another process writes, never creating it (mode=rw)."""
    return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=30, isolation_level=None)


def _query(path: Path, sql: str, *args: object) -> list[tuple]:
    with closing(_open(path)) as db:
        return db.execute(sql, args).fetchall()


def _line(text: str) -> int:
    return int(text.rsplit(" ", 1)[1])


def _stored_lines(rig: Rig) -> list[int]:
    """Every line number in the event store, with repeats, in id order."""
    rows = _query(
        rig.server_dir / "events.db", "SELECT full_log FROM event WHERE module = 'logcollector'"
    )
    return [_line(text) for (text,) in rows]


def _stored_count(rig: Rig) -> int:
    rows = _query(
        rig.server_dir / "events.db", "SELECT COUNT(*) FROM event WHERE module = 'logcollector'"
    )
    return int(rows[0][0])


def _stored(rig: Rig, sequence: int) -> bool:
    rows = _query(
        rig.server_dir / "events.db",
        "SELECT 1 FROM ingest_batch WHERE source_id = ? AND sequence = ?",
        rig.agent_id,
        sequence,
    )
    return bool(rows)


def _pending(rig: Rig) -> Pending | None:
    """Return the batch the outbox has formed and not seen acknowledged, if any."""
    with closing(_open(rig.agent_dir / "outbox.db")) as db:
        db.execute("BEGIN")  # one snapshot: the agent may acknowledge between the reads
        batch = db.execute("SELECT sequence, first_id, last_id FROM batch ORDER BY sequence")
        row = batch.fetchone()
        if row is None:
            return None
        sequence, first_id, last_id = row
        bodies = db.execute(
            "SELECT body FROM event WHERE id BETWEEN ? AND ? ORDER BY id", (first_id, last_id)
        ).fetchall()
    return Pending(sequence, first_id, [_line(json.loads(body)["full_log"]) for (body,) in bodies])


def _queued(rig: Rig) -> tuple[int, int | None]:
    """Return how many events wait in the outbox and the lowest id among them."""
    ((count, lowest),) = _query(rig.agent_dir / "outbox.db", "SELECT COUNT(*), MIN(id) FROM event")
    return int(count), lowest


def _delivered(rig: Rig) -> bool:
    """True once the outbox is empty and the store holds as many lines as were written."""
    return _queued(rig)[0] == 0 and _pending(rig) is None and _stored_count(rig) == rig.written


def _trap(rig: Rig, direction: str) -> Pending:
    """Hold one direction of the relay until the agent is stuck in the middle of a batch.

    "down": the server has stored the batch and its acknowledgement is held in the relay.
    "up": part of the batch's request is held, so the server cannot have all of it.
    """
    floor = rig.last_trapped
    rig.write(BACKLOG)  # plenty to send, so a batch is always on its way
    _until(lambda: (p := _pending(rig)) is not None and p.sequence > floor, "a batch in flight")
    (rig.relay.hold_down if direction == "down" else rig.relay.hold_up).set()

    def stuck() -> Pending | None:
        held = rig.relay.held_bytes[direction]  # read before the outbox: see the docstring
        pending = _pending(rig)
        if held == 0 or pending is None or pending.sequence <= floor:
            return None
        return pending if _stored(rig, pending.sequence) == (direction == "down") else None

    pending = _until(stuck, f"the agent stuck mid-batch ({direction})")
    rig.last_trapped = pending.sequence
    return pending


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    """A started server and an agent enrolled through the relay (not yet running)."""
    port = _free_port()
    rig = Rig(root=tmp_path, port=port, relay=Relay(port))
    rig.server_dir.mkdir()
    rig.start_server()
    base = f"https://127.0.0.1:{port}"
    token = httpx.post(
        f"{base}/api/v1/enrollment-tokens",
        json={},
        headers={"Authorization": f"Bearer {_api_key(rig.server_dir)}"},
        verify=str(rig.server_dir / "tls" / "server.crt"),
    ).json()
    via_relay = f"https://127.0.0.1:{rig.relay.port}"
    enrolled = _agent(
        *("enroll", "--server", via_relay, "--token", token["token"]),
        *("--fingerprint", token["server_fingerprint"], "--state-dir", str(rig.agent_dir)),
    )
    assert enrolled.returncode == 0, enrolled.stderr
    rig.agent_id = json.loads((rig.agent_dir / "enrolment.json").read_text())["agent_id"]
    rig.log.touch()
    try:
        yield rig
    finally:
        if rig.agent is not None:
            rig.agent.kill()
            rig.agent.wait(timeout=30)
        if rig.server is not None:
            rig.end_server(signal.SIGTERM)
        rig.relay.close()


def _server_stopped_for_100k_lines(rig: Rig) -> None:
    rig.write(BEFORE_OUTAGE)
    _until(lambda: _delivered(rig), "the lines written before the outage", pause=0.2)
    rig.end_server(signal.SIGTERM)
    for _ in range(10):  # the agent keeps collecting while nobody answers
        rig.write(OUTAGE_LINES // 10)
        time.sleep(0.1)
    _until(lambda: _queued(rig)[0] == OUTAGE_LINES or None, "the outage lines in the outbox")
    assert _stored_count(rig) == BEFORE_OUTAGE  # none of them reached the store yet
    rig.start_server()
    _until(lambda: _delivered(rig), "the lines written during the outage", pause=0.2)
    assert sorted(_stored_lines(rig)) == list(range(BEFORE_OUTAGE + OUTAGE_LINES))


def _agent_killed_after_the_server_stored_a_batch(rig: Rig) -> None:
    pending = _trap(rig, "down")
    rig.kill_agent()
    rig.relay.cut()
    on_disk = _pending(rig)  # the dead agent's outbox: the ack was never recorded
    assert on_disk == pending, (on_disk, pending)
    assert _stored(rig, pending.sequence)
    assert sorted(_stored_lines(rig)) == list(range(pending.lines[-1] + 1))
    rig.kills.append(f"agent, batch {pending.sequence} stored but not acknowledged")
    rig.start_agent()


def _agent_killed_while_a_batch_was_on_its_way(rig: Rig) -> None:
    pending = _trap(rig, "up")
    rig.kill_agent()
    rig.relay.cut()
    assert _pending(rig) == pending
    assert not _stored(rig, pending.sequence)  # the server never had the whole request
    assert sorted(_stored_lines(rig)) == list(range(pending.lines[0]))
    rig.kills.append(f"agent, batch {pending.sequence} half sent")
    rig.start_agent()


def _server_killed_with_an_acknowledgement_on_its_way(rig: Rig) -> None:
    pending = _trap(rig, "down")
    assert rig.agent is not None
    assert rig.agent.poll() is None  # alive, waiting for the ack
    rig.end_server(signal.SIGKILL)
    rig.relay.cut()
    assert rig.agent.poll() is None
    assert _pending(rig) == pending  # the agent never saw the acknowledgement
    # Everything before the batch left the outbox, which happens only on an ack, and all
    # of it is in the store the killed server left on disk; the batch itself is there once.
    assert _queued(rig)[1] == pending.first_id
    assert sorted(_stored_lines(rig)) == list(range(pending.lines[-1] + 1))
    rig.kills.append(f"server, batch {pending.sequence} stored, ack in flight")
    rig.write(BACKLOG)  # the agent keeps collecting while the server is down
    rig.start_server()


def test_nothing_is_lost_or_doubled_through_outages_and_kills(rig):
    rig.start_agent()
    _server_stopped_for_100k_lines(rig)
    _agent_killed_after_the_server_stored_a_batch(rig)
    _agent_killed_while_a_batch_was_on_its_way(rig)
    _server_killed_with_an_acknowledgement_on_its_way(rig)
    _until(lambda: _delivered(rig), "every line after the kills", pause=0.2)
    assert rig.agent is not None
    assert rig.agent.poll() is None
    assert len(rig.kills) == 3, rig.kills
    assert sorted(_stored_lines(rig)) == list(range(rig.written))  # each line exactly once
