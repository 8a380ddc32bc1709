"""The agent's main loop: collect, deliver in acknowledged batches, keep alive, respond.

The configuration the agent runs is the server's (its groups', delivered with a
keep-alive reply and kept in `server-config.json` so a restart applies it before the
server answers) merged with the local file (see `puffin.agent.collectors`), plus the
`--log` options. Tasks and their results go through the task journal, so a restart
neither loses a result nor runs an action twice.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puffin import __version__
from puffin.agent import state, transport
from puffin.agent.collectors import Collectors, merge
from puffin.agent.delivery import DeliveryError, deliver
from puffin.agent.files import FileTailer, LogSource
from puffin.agent.http import Client, TransportError
from puffin.agent.outbox import Outbox
from puffin.agent.response import Responder, allowed_actions
from puffin.agent.tasks import JOURNAL_FILE, TaskJournal
from puffin.protocol.messages import (
    AGENT_HEADER,
    GATEWAY_PREFIX,
    KeepAlive,
    KeepAliveReply,
    Task,
    TaskResult,
)

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"
SERVER_CONFIG_FILE = "server-config.json"
EXPIRE_EVERY = 5.0
TIMINGS: dict[str, tuple[float, float]] = {  # the local `agent` section: name -> range
    "poll_seconds": (0.05, 60.0),
    "batch_seconds": (0.1, 3600.0),
    "batch_size": (1, 20_000),
    "keepalive_seconds": (1.0, 3600.0),
}


@dataclass
class AgentSettings:
    """What the agent collects, what it may do, and how often it talks to the server."""

    logs: list[LogSource] = field(default_factory=list)
    local_config: dict[str, Any] = field(default_factory=dict)
    allowed_actions: set[str] = field(default_factory=lambda: {"block-ip"})
    poll_seconds: float = 1.0
    batch_seconds: float = 5.0
    batch_size: int = 500
    keepalive_seconds: float = 30.0


@dataclass
class Agent:
    """One running agent."""

    state_dir: Path
    settings: AgentSettings
    enrolment: state.Enrolment
    cert_pem: str
    outbox: Outbox
    journal: TaskJournal
    config_hash: str = ""
    server_config: dict[str, Any] = field(default_factory=dict)
    sources: list[LogSource] = field(default_factory=list)
    last_delivery_error: str | None = None
    _backoff: float = 1.0
    _next_send: float = 0.0

    @classmethod
    def open(cls, state_dir: Path, settings: AgentSettings) -> Agent:
        """Load the enrolment, the outbox, the task journal and the last server configuration."""
        enrolment, cert_pem = state.load(state_dir)
        outbox = Outbox(state_dir / OUTBOX_FILE, first_sequence=enrolment.sequence_start)
        journal = TaskJournal(state_dir / JOURNAL_FILE)
        agent = cls(state_dir, settings, enrolment, cert_pem, outbox, journal)
        saved = state.load_json(state_dir / SERVER_CONFIG_FILE)
        if isinstance(saved, dict) and saved.get("agent_id") == enrolment.agent_id:
            agent.config_hash = str(saved.get("hash", ""))
            agent.server_config = saved.get("config") or {}
        return agent

    def close(self) -> None:
        """Close the outbox and the task journal."""
        self.outbox.close()
        self.journal.close()

    def http(self) -> Client:
        """Return a client with the agent's credentials and the pinned certificate."""
        headers = {
            AGENT_HEADER: self.enrolment.agent_id,
            "Authorization": f"Bearer {self.enrolment.credential}",
        }
        return transport.client(self.enrolment.server, self.cert_pem, headers)

    def deliver(self, http: Client) -> int:
        """Send waiting batches until the outbox is empty or the server fails; return sent."""
        return deliver(http, self.outbox, self.settings.batch_size).sent

    # configuration -------------------------------------------------------------------

    def configure(self, collectors: Collectors, tailer: FileTailer | None = None) -> None:
        """Run what the server's configuration merged with the local file asks for."""
        config = merge(self.server_config, self.settings.local_config)
        collectors.configure(config, local=self.settings.local_config)
        configured = [s for s in _log_sources(config.get("logs")) if s not in self.settings.logs]
        self.sources = self.settings.logs + configured
        if tailer is not None:
            tailer.keep_only(self.sources)

    def _adopt(self, digest: str, config: dict[str, Any]) -> None:
        self.config_hash, self.server_config = digest, config
        document = {"agent_id": self.enrolment.agent_id, "hash": digest, "config": config}
        state.save_json(self.state_dir / SERVER_CONFIG_FILE, document)

    # keep-alive and tasks ------------------------------------------------------------

    def health(self, collectors: Collectors) -> dict[str, Any]:
        """Return the counters a keep-alive reports."""
        return {
            **self.outbox.counters(),
            "version": __version__,
            "tasks_waiting": self.journal.pending_count(),
            "last_delivery_error": self.last_delivery_error,
            "collectors": collectors.status(),
        }

    def keepalive(
        self, http: Client, collectors: Collectors, responder: Responder
    ) -> KeepAliveReply | None:
        """Report health, sent events and task results; return the server's reply."""
        results = self.journal.results(1000)
        sent = self.outbox.unreported_sent()
        report = KeepAlive(
            health=self.health(collectors),
            config_hash=self.config_hash,
            task_results=results,
            events_sent=sent,
            allowed_actions=sorted(responder.allowed),
        )
        try:
            response = http.post(f"{GATEWAY_PREFIX}/keepalive", json=report.model_dump(mode="json"))
        except TransportError:
            return None
        if response.status_code == 404 and results:
            logger.warning("the server knows none of these tasks; their results are dropped")
            self.journal.reported(results)  # resending them can never succeed
        if response.status_code != 200:
            return None
        self.journal.reported(results)
        self.outbox.mark_reported(sent)
        return KeepAliveReply.model_validate(response.json())

    def apply(
        self,
        reply: KeepAliveReply,
        collectors: Collectors,
        responder: Responder,
        tailer: FileTailer | None = None,
    ) -> None:
        """Apply a new server configuration and run the server's tasks."""
        if reply.config is not None and reply.config_hash != self.config_hash:
            self._adopt(reply.config_hash, reply.config)
            self.configure(collectors, tailer)
        self.journal.receive(reply.tasks)
        self.run_tasks(responder)

    def run_tasks(self, responder: Responder) -> None:
        """Run the journal's waiting tasks, keeping each result for the next keep-alive."""
        waiting = self.journal.waiting()
        if waiting:  # the server's name may resolve to new addresses: protect them too
            addresses = transport.server_addresses(self.enrolment.server)
            responder.protected |= {ipaddress.ip_address(address) for address in addresses}
        for task in waiting:
            self.journal.start(task)
            self.journal.finish(self._run_task(task, responder))

    def _run_task(self, task: Task, responder: Responder) -> TaskResult:
        if task.action == "configure":  # the configuration itself rides on the reply
            return TaskResult(task_id=task.id, ok=True, result={"config_hash": self.config_hash})
        return responder.run(task)

    def expire(self, responder: Responder) -> None:
        """Lift the timed blocks that are due, journalling each result."""
        for result in responder.expire():
            self.journal.finish(result)

    # the loop ------------------------------------------------------------------------

    def responder(self) -> Responder:
        """Return the responder: the local allow-list, and the server's addresses protected."""
        protected = transport.server_addresses(self.enrolment.server)
        return Responder(self.state_dir, allowed=self.settings.allowed_actions, protected=protected)

    def run(self, stop_after: float | None = None, stop: threading.Event | None = None) -> None:
        """Collect and deliver until interrupted, `stop` is set, or `stop_after` seconds."""
        stop = stop or threading.Event()
        tailer = FileTailer(self.outbox)
        collectors = Collectors(self.state_dir)
        self.configure(collectors, tailer)
        responder = self.responder()
        self.expire(responder)  # blocks that ran out while the agent was stopped
        self.run_tasks(responder)  # tasks received before a stop
        started = time.monotonic()
        next_keepalive = next_expire = 0.0
        with self.http() as http:
            try:
                while not stop.is_set() and (
                    stop_after is None or time.monotonic() - started < stop_after
                ):
                    self._collect(tailer, collectors)
                    now = time.monotonic()
                    if now >= next_expire:
                        self.expire(responder)
                        next_expire = now + EXPIRE_EVERY
                    if now >= next_keepalive:
                        reply = self.keepalive(http, collectors, responder)
                        if reply is not None:
                            self.apply(reply, collectors, responder, tailer)
                        next_keepalive = now + self.settings.keepalive_seconds
                    if now >= self._next_send:
                        self._try_deliver(http, now)
                    stop.wait(self.settings.poll_seconds)
                self._try_deliver(http, time.monotonic())
            finally:
                tailer.close()
                collectors.close()

    def _collect(self, tailer: FileTailer, collectors: Collectors) -> None:
        logs = collectors.health_of("logs")
        for source in self.sources:
            try:
                logs.events += tailer.poll(source)
            except Exception as error:  # one bad file must not stop the agent
                logger.exception("reading %s failed", source.pattern)
                logs.failed(f"{source.pattern}: {type(error).__name__}: {error}")
        collectors.collect(self.outbox)

    def _try_deliver(self, http: Client, now: float) -> None:
        try:
            self.deliver(http)
        except DeliveryError as error:
            wait = error.retry_after or self._backoff * random.uniform(0.5, 1.5)  # noqa: S311
            self._backoff = min(self._backoff * 2, 300.0)
            self._next_send = now + wait
            self.last_delivery_error = str(error)[:500]
            logger.warning("delivery paused %.1f s: %s", wait, error)
            return
        self._backoff = 1.0
        self.last_delivery_error = None
        self._next_send = now + self.settings.batch_seconds


def _log_sources(items: Any) -> list[LogSource]:
    """Read `logs` configuration: strings `GLOB[::FORMAT]` or {"path", "format"} objects."""
    sources = []
    for item in items or []:
        if isinstance(item, dict) and "path" in item:
            sources.append(
                LogSource(pattern=str(item["path"]), format=str(item.get("format", "syslog")))
            )
        elif isinstance(item, str):
            pattern, _, fmt = item.partition("::")
            sources.append(LogSource(pattern=pattern, format=fmt or "syslog"))
    return sources


def _timings(section: Any) -> dict[str, Any]:
    """Validate the local file's `agent` section (how often the agent polls, sends, calls)."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError("agent: must be an object")
    values: dict[str, Any] = {}
    for name, value in section.items():
        if name not in TIMINGS:
            raise ValueError(f"agent.{name}: unknown setting; known: {', '.join(TIMINGS)}")
        low, high = TIMINGS[name]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not low <= value <= high:
            raise ValueError(f"agent.{name}: must be a number from {low} to {high}")
        values[name] = int(value) if name == "batch_size" else float(value)
    return values


def settings_from(
    logs: list[str], values: dict[str, Any] | None = None, *, local: dict[str, Any] | None = None
) -> AgentSettings:
    """Build agent settings from `--log GLOB[::FORMAT]` options and the local configuration.

    Raises ValueError for a local `agent` or `response` section that is not valid.
    """
    local = dict(local or {})
    options = {**_timings(local.get("agent")), **(values or {})}
    return AgentSettings(
        logs=_log_sources(logs),
        local_config=local,
        allowed_actions=allowed_actions(local),
        **options,
    )
