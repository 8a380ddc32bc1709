"""The durable outbox: events and source positions committed together, sent in batches
that keep their sequence number until the server acknowledges them.

A batch the server refuses for its content is first split (a batch that is only too
large usually goes through in halves); one event that is still refused on its own is
moved to the `dead_letter` table, counted as `quarantined`, and announced by one
`batch quarantined` event, so it never blocks the events behind it.
`puffin agent requeue` puts dead letters back in the queue.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS event (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS position (source TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batch (
    sequence INTEGER PRIMARY KEY, first_id INTEGER NOT NULL, last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sequence INTEGER NOT NULL, status INTEGER NOT NULL,
    reason TEXT NOT NULL, quarantined_at TEXT NOT NULL, body TEXT NOT NULL
);
"""
QUARANTINE_TITLE = "batch quarantined"


@dataclass(frozen=True)
class Batch:
    """Events to send under one sequence number."""

    sequence: int
    last_id: int
    events: list[dict[str, Any]]


class Outbox:
    """An SQLite queue on the endpoint; nothing leaves it before the server's ack."""

    def __init__(self, path: Path, max_events: int = 1_000_000, first_sequence: int = 1) -> None:
        self.path = path
        self.max_events = max_events
        self.first_sequence = first_sequence  # this enrolment's block of sequence numbers
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def add(
        self, events: Iterable[Mapping[str, Any]], positions: Mapping[str, str] | None = None
    ) -> int:
        """Store events and the source positions they came from in one transaction.

        Past the size cap the new events are dropped, counted, and one `events dropped`
        event says so; the positions still move on, so the source is not re-read forever.
        """
        rows = [(json.dumps(event, separators=(",", ":"), default=str),) for event in events]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                room = self.max_events - self._count()
                dropped = max(len(rows) - max(room, 0), 0)
                kept = rows[: len(rows) - dropped]
                self._db.executemany("INSERT INTO event (body) VALUES (?)", kept)
                if dropped:
                    self._bump("dropped", dropped)
                    self._note_drop(dropped)
                for source, value in (positions or {}).items():
                    self._db.execute(
                        "INSERT INTO position (source, value) VALUES (?, ?) "
                        "ON CONFLICT(source) DO UPDATE SET value = excluded.value",
                        (source, value),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(kept)

    def _note_drop(self, dropped: int) -> None:
        notice = {
            "module": "agent",
            "title": "events dropped",
            "dropped": dropped,
            "full_log": f"agent outbox full: {dropped} events dropped",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self._db.execute("INSERT INTO event (body) VALUES (?)", (json.dumps(notice),))

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM event").fetchone()[0])

    def _bump(self, name: str, amount: int) -> None:
        self._db.execute(
            "INSERT INTO counter (name, value) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (name, amount),
        )

    def position(self, source: str) -> str | None:
        """Return the saved position of a source."""
        row = self._db.execute("SELECT value FROM position WHERE source = ?", (source,)).fetchone()
        return str(row[0]) if row else None

    def next_batch(self, max_events: int = 500) -> Batch | None:
        """Return the unacknowledged batch, or form a new one; None when nothing waits."""
        with self._lock:
            pending = self._db.execute(
                "SELECT sequence, first_id, last_id FROM batch ORDER BY sequence LIMIT 1"
            ).fetchone()
            if pending is None:
                pending = self._form_batch(max_events)
                if pending is None:
                    return None
            sequence, first_id, last_id = pending
            bodies = self._db.execute(
                "SELECT body FROM event WHERE id BETWEEN ? AND ? ORDER BY id", (first_id, last_id)
            ).fetchall()
        return Batch(sequence, last_id, [json.loads(body) for (body,) in bodies])

    def _form_batch(self, max_events: int) -> tuple[int, int, int] | None:
        ids = self._db.execute("SELECT id FROM event ORDER BY id LIMIT ?", (max_events,)).fetchall()
        if not ids:
            return None
        self._db.execute("BEGIN IMMEDIATE")
        row = self._db.execute("SELECT value FROM counter WHERE name = 'sequence'").fetchone()
        sequence = max((int(row[0]) if row else 0) + 1, self.first_sequence)
        self._db.execute(
            "INSERT INTO counter (name, value) VALUES ('sequence', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (sequence,),
        )
        self._db.execute(
            "INSERT INTO batch (sequence, first_id, last_id) VALUES (?, ?, ?)",
            (sequence, ids[0][0], ids[-1][0]),
        )
        self._db.execute("COMMIT")
        return sequence, ids[0][0], ids[-1][0]

    def acknowledge(self, batch: Batch) -> None:
        """Forget a batch the server has stored."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM event WHERE id <= ?", (batch.last_id,))
            self._db.execute("DELETE FROM batch WHERE sequence = ?", (batch.sequence,))
            self._bump("sent", len(batch.events))
            self._db.execute("COMMIT")

    def split(self, batch: Batch) -> bool:
        """Keep only the first half of a refused batch under its sequence; False if one event.

        The server stored nothing under a sequence it refused, so the number may carry
        fewer events; the rest form the next batches.
        """
        if len(batch.events) < 2:
            return False
        with self._lock:
            ids = self._db.execute(
                "SELECT e.id FROM event e JOIN batch b ON e.id BETWEEN b.first_id AND b.last_id "
                "WHERE b.sequence = ? ORDER BY e.id",
                (batch.sequence,),
            ).fetchall()
            if len(ids) < 2:
                return False
            self._db.execute(
                "UPDATE batch SET last_id = ? WHERE sequence = ?",
                (ids[len(ids) // 2 - 1][0], batch.sequence),
            )
        return True

    def quarantine(self, batch: Batch, *, status: int, reason: str) -> int:
        """Move a refused batch's events to the dead letters; return how many were moved.

        One `batch quarantined` event says so, unless the batch held only such notices
        (a server refusing everything must not get a notice about each notice).
        """
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                moved = self._db.execute(
                    "INSERT INTO dead_letter (sequence, status, reason, quarantined_at, body) "
                    "SELECT ?, ?, ?, ?, body FROM event WHERE id <= ? ORDER BY id",
                    (batch.sequence, status, reason[:1000], stamp, batch.last_id),
                ).rowcount
                self._db.execute("DELETE FROM event WHERE id <= ?", (batch.last_id,))
                self._db.execute("DELETE FROM batch WHERE sequence = ?", (batch.sequence,))
                self._bump("quarantined", moved)
                if any(event.get("title") != QUARANTINE_TITLE for event in batch.events):
                    notice = _quarantine_notice(batch, status, reason, moved, stamp)
                    self._db.execute("INSERT INTO event (body) VALUES (?)", (notice,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return int(moved)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Return the quarantined events with why the server refused them."""
        rows = self._db.execute(
            "SELECT sequence, status, reason, quarantined_at, body FROM dead_letter ORDER BY id"
        ).fetchall()
        return [
            {"sequence": seq, "status": code, "reason": why, "at": at, "event": json.loads(body)}
            for seq, code, why, at, body in rows
        ]

    def requeue(self) -> int:
        """Put every dead letter back at the end of the queue; return how many."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            moved = self._db.execute(
                "INSERT INTO event (body) SELECT body FROM dead_letter ORDER BY id"
            ).rowcount
            self._db.execute("DELETE FROM dead_letter")
            self._db.execute("COMMIT")
        return int(moved)

    def unreported_sent(self) -> int:
        """Return how many acknowledged events no keep-alive has reported yet."""
        values = dict(self._db.execute("SELECT name, value FROM counter").fetchall())
        return int(values.get("sent", 0)) - int(values.get("reported", 0))

    def mark_reported(self, count: int) -> None:
        """Note that a keep-alive the server answered reported `count` more sent events."""
        with self._lock:
            self._bump("reported", count)

    def counters(self) -> dict[str, int]:
        """Return health counters: queued, sent, dropped and quarantined events."""
        values = dict(self._db.execute("SELECT name, value FROM counter").fetchall())
        return {
            "queued": self._count(),
            "sent": int(values.get("sent", 0)),
            "dropped": int(values.get("dropped", 0)),
            "quarantined": int(values.get("quarantined", 0)),
        }


def _quarantine_notice(batch: Batch, status: int, reason: str, moved: int, stamp: str) -> str:
    notice = {
        "module": "agent",
        "title": QUARANTINE_TITLE,
        "quarantined": moved,
        "sequence": batch.sequence,
        "status": status,
        "reason": reason[:500],
        "full_log": f"the server refused batch {batch.sequence} ({status}: {reason[:200]}); "
        f"{moved} event(s) kept in the agent's dead letters",
        "timestamp": stamp,
    }
    return json.dumps(notice)
