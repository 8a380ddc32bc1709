"""The agent's task journal: tasks from the server and their results, kept on disk until the
server has them, so an agent restart neither forgets a result nor repeats an action.

A task is `received`, then `running` while its action runs, then `done` with its result.
A task found `running` when the agent starts was interrupted by a crash: it is reported
as failed and never run again (killing a pid twice could hit a reused pid). Results of
automatic unblocks are journalled the same way, under the block's task id.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path

from puffin.protocol.messages import Task, TaskResult

JOURNAL_FILE = "tasks.db"
SCHEMA = """
CREATE TABLE IF NOT EXISTS task (
    id TEXT PRIMARY KEY, body TEXT NOT NULL, state TEXT NOT NULL, result TEXT,
    seq INTEGER NOT NULL DEFAULT 0
);
"""
INTERRUPTED = "the agent stopped while this task ran; it was not run again"


class TaskJournal:
    """An SQLite journal of tasks and results in the agent's state directory."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._recover()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _recover(self) -> None:
        rows = self._db.execute("SELECT body FROM task WHERE state = 'running'").fetchall()
        for (body,) in rows:
            task = Task.model_validate_json(body)
            failed = TaskResult(task_id=task.id, ok=False, result={"error": INTERRUPTED})
            self.finish(failed)

    def receive(self, tasks: Iterable[Task]) -> None:
        """Record tasks the server handed over (a task seen before is ignored)."""
        with self._lock:
            self._db.executemany(
                "INSERT OR IGNORE INTO task (id, body, state) VALUES (?, ?, 'received')",
                [(str(task.id), task.model_dump_json()) for task in tasks],
            )

    def waiting(self) -> list[Task]:
        """Return the tasks received and not yet started, oldest first."""
        rows = self._db.execute(
            "SELECT body FROM task WHERE state = 'received' ORDER BY rowid"
        ).fetchall()
        return [Task.model_validate_json(body) for (body,) in rows]

    def start(self, task: Task) -> None:
        """Note that the task's action is about to run."""
        with self._lock:
            self._db.execute("UPDATE task SET state = 'running' WHERE id = ?", (str(task.id),))

    def finish(self, result: TaskResult) -> None:
        """Keep a result until the server has it (a later result replaces an unsent one)."""
        task_id, result_json = str(result.task_id), result.model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT INTO task (id, body, state, result, seq) VALUES (?, ?, 'done', ?, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM task)) "
                "ON CONFLICT(id) DO UPDATE SET state = 'done', result = excluded.result, "
                "seq = excluded.seq",
                (task_id, Task(id=result.task_id, action="").model_dump_json(), result_json),
            )

    def results(self, limit: int = 1000) -> list[TaskResult]:
        """Return results not yet acknowledged by the server, oldest first."""
        rows = self._db.execute(
            "SELECT result FROM task WHERE state = 'done' ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [TaskResult.model_validate_json(result) for (result,) in rows]

    def reported(self, results: Iterable[TaskResult]) -> None:
        """Forget results the server has stored (a newer result for the task is kept)."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM task WHERE id = ? AND state = 'done' AND result = ?",
                [(str(r.task_id), r.model_dump_json()) for r in results],
            )

    def pending_count(self) -> int:
        """Return how many tasks wait to run or to be reported."""
        return int(self._db.execute("SELECT COUNT(*) FROM task").fetchone()[0])
