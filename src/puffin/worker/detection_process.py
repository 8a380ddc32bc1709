"""Live detection in a process of its own, beside the HTTP server.

The HTTP server stores batches and answers agents; matching rules and raising alerts is
as much work again, and in one process both share one interpreter lock, so one core. With
`[detection] process` on (the default under `puffin server run`), the server starts one
child process that runs the same `DetectionWorker` over the same databases: the event
store is only read there, and alerts are committed with the detection cursor as before,
so a child that dies resumes where its last commit left off — nothing skipped, nothing
raised twice. The server restarts a child that died, with a growing pause.

The child loads the rule packs itself (the compiled-rule cache makes that quick) and
reloads them when their files change, which is also what the server's own "reload"
does; rule switches and dedupe settings are read from the database per batch as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.process import BaseProcess

from puffin.core.state import AppState
from puffin.detection.registry import rule_registry
from puffin.worker.detection import IDLE_SECONDS, DetectionWorker

logger = logging.getLogger(__name__)

RELOAD_CHECK_SECONDS = 5.0  # how often the child looks for changed rule files
RESTART_PAUSES = (1.0, 2.0, 5.0, 10.0, 30.0)
STOP_SECONDS = 10.0


def run_child(
    state: AppState,
    build_worker: Callable[[AppState], DetectionWorker],
    parent_pid: int,
    stop: threading.Event | None = None,
) -> None:
    """The child's loop: detect batch after batch until SIGTERM or the parent is gone."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signo, _frame: stop.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which stops us
    registry = rule_registry(state)
    registry.reload()
    worker = build_worker(state)
    next_check = time.monotonic() + RELOAD_CHECK_SECONDS
    while not stop.is_set() and os.getppid() == parent_pid:
        read = worker.run_guarded()
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + RELOAD_CHECK_SECONDS
            if registry.needs_reload():
                logger.info("rule files changed; detection reloads them")
                registry.reload()
        if read < worker.batch_size:
            stop.wait(IDLE_SECONDS)


class DetectionProcess:
    """Starts the detection child, restarts it when it dies, stops it with the server."""

    def __init__(self, target: Callable[[str, int], None], settings_json: str) -> None:
        self._target = target
        self._settings_json = settings_json
        self._context = multiprocessing.get_context("spawn")  # never fork a threaded server
        self.process: BaseProcess | None = None
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the child and the task that watches it."""
        self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def _spawn(self) -> None:
        process = self._context.Process(
            target=self._target,
            args=(self._settings_json, os.getpid()),
            name="puffin-detection",
            daemon=False,
        )
        process.start()
        self.process = process
        logger.info("live detection runs in process %s", process.pid)

    async def _watch(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(1.0)
            process = self.process
            if process is None or process.is_alive():
                continue
            pause = RESTART_PAUSES[min(failures, len(RESTART_PAUSES) - 1)]
            logger.error(
                "the detection process stopped (exit code %s); starting it again in %.0f s",
                process.exitcode,
                pause,
            )
            failures += 1
            await asyncio.sleep(pause)
            self.restarts += 1
            self._spawn()

    async def stop(self) -> None:
        """Stop watching, then ask the child to stop (SIGTERM), killing it after a while."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        process = self.process
        if process is None or not process.is_alive():
            return
        process.terminate()
        await asyncio.to_thread(process.join, STOP_SECONDS)
        if process.is_alive():
            logger.warning("the detection process did not stop in %.0f s; killed", STOP_SECONDS)
            process.kill()
            await asyncio.to_thread(process.join, STOP_SECONDS)
