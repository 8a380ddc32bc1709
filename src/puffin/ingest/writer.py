"""Group commit: one writer thread stores many agents' batches per transaction.

With hundreds of agents sending at once, one transaction per request would make them
queue for the database's write lock. The writer takes everything waiting, stores it in
one transaction, and only then answers each request, so an acknowledgement always means
the batch is on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future

from puffin.core.db import is_busy
from puffin.ingest.store import BatchResult, EventStore, PendingBatch

logger = logging.getLogger(__name__)

MAX_GROUP_BATCHES = 500
MAX_GROUP_EVENTS = 50_000

_Item = tuple[PendingBatch, "Future[BatchResult]"]


class GroupCommitWriter:
    """Queues batches and stores them in groups from a single thread."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="puffin-event-writer", daemon=True)
        self.groups_written = 0
        self.batches_written = 0

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def stop(self) -> None:
        """Store what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, batch: PendingBatch) -> Future[BatchResult]:
        """Queue a batch; the future resolves once it is committed."""
        future: Future[BatchResult] = Future()
        self._queue.put((batch, future))
        return future

    def _take_group(self, first: _Item) -> tuple[list[_Item], bool]:
        group = [first]
        events = len(first[0].events)
        stopping = False
        while len(group) < MAX_GROUP_BATCHES and events < MAX_GROUP_EVENTS:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stopping = True
                break
            group.append(item)
            events += len(item[0].events)
        return group, stopping

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stopping = self._take_group(first)
            self._write(group)
            if stopping:
                return

    def _write(self, group: list[_Item]) -> None:
        try:
            results = self.store.append_many([batch for batch, _ in group])
        except Exception as error:
            if is_busy(error):  # load, answered 503: a line without the statement's values
                logger.warning(
                    "storing %d batches failed, database busy (%s); agents will resend them",
                    len(group),
                    type(error).__name__,
                )
            else:
                logger.exception("storing %d batches failed; agents will resend them", len(group))
            for _, future in group:
                if not future.cancelled():  # its request was cut off (server stopping)
                    future.set_exception(error)
            return
        self.groups_written += 1
        self.batches_written += len(group)
        for (_, future), result in zip(group, results, strict=True):
            if not future.cancelled():  # stored all the same: the agent's resend is a duplicate
                future.set_result(result)
