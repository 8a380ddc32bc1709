"""The agent's main loop: collect, deliver in acknowledged batches, keep alive."""

from __future__ import annotations

import gzip
import json
import logging
import platform
import random
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puffin import __version__
from puffin.agent import state, transport
from puffin.agent.collectors import Collectors, merge
from puffin.agent.files import FileTailer, LogSource
from puffin.agent.http import Client, Response, TransportError
from puffin.agent.outbox import Batch, Outbox
from puffin.agent.response import Responder
from puffin.protocol.wire import (
    AGENT_HEADER,
    GATEWAY_PREFIX,
    SEQUENCE_HEADER,
    BatchAck,
    EnrollRequest,
    EnrollResponse,
    KeepAlive,
    KeepAliveReply,
    TaskResult,
)

logger = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"


class DeliveryError(Exception):
    """The server did not take the batch; try again later (after `retry_after` seconds)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def enroll(
    *, server: str, token: str, name: str, state_dir: Path, expected_fingerprint: str | None
) -> state.Enrolment:
    """Pin the server's certificate, enrol with the token and store the credential."""
    cert_pem = transport.fetch_server_certificate(server)
    fingerprint = transport.describe(cert_pem)
    if expected_fingerprint and _norm(expected_fingerprint) != _norm(fingerprint):
        raise ValueError(
            f"the server's certificate is {fingerprint}, not the expected {expected_fingerprint}"
        )
    request = EnrollRequest(
        token=token,
        name=name,
        hostname=socket.gethostname(),
        os_name=platform.system(),
        os_version=platform.release(),
        agent_version=__version__,
    )
    with transport.client(server, cert_pem) as http:
        try:
            response = http.post(f"{GATEWAY_PREFIX}/enroll", json=request.model_dump())
        except TransportError as error:
            raise ValueError(f"the server did not answer: {error}") from error
    if response.status_code != 201:
        raise ValueError(f"enrolment refused ({response.status_code}): {_detail(response)}")
    enrolled = EnrollResponse.model_validate(response.json())
    enrolment = state.Enrolment(
        server=server,
        agent_id=str(enrolled.agent_id),
        organisation_id=str(enrolled.organisation_id),
        credential=enrolled.credential,
        fingerprint=fingerprint,
        name=name,
    )
    state.save(state_dir, enrolment, cert_pem)
    return enrolment


def _norm(fingerprint: str) -> str:
    return fingerprint.replace(":", "").replace(" ", "").upper()


def _detail(response: Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


@dataclass
class AgentSettings:
    """What the agent collects and how often it talks to the server."""

    logs: list[LogSource] = field(default_factory=list)
    local_config: dict[str, Any] = field(default_factory=dict)
    allowed_actions: set[str] = field(default_factory=lambda: {"block-ip", "unblock-ip"})
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
    _backoff: float = 1.0
    _next_send: float = 0.0
    config_version: int = 0
    _results: list[TaskResult] = field(default_factory=list)

    @classmethod
    def open(cls, state_dir: Path, settings: AgentSettings) -> Agent:
        """Load the enrolment and the outbox from the state directory."""
        enrolment, cert_pem = state.load(state_dir)
        return cls(state_dir, settings, enrolment, cert_pem, Outbox(state_dir / OUTBOX_FILE))

    def http(self) -> Client:
        """Return a client with the agent's credentials and the pinned certificate."""
        headers = {
            AGENT_HEADER: self.enrolment.agent_id,
            "Authorization": f"Bearer {self.enrolment.credential}",
        }
        return transport.client(self.enrolment.server, self.cert_pem, headers)

    def send_batch(self, http: Client, batch: Batch) -> BatchAck:
        """Send one batch; return the server's acknowledgement or raise DeliveryError."""
        body = gzip.compress(json.dumps({"events": batch.events}, default=str).encode())
        try:
            response = http.post(
                f"{GATEWAY_PREFIX}/events",
                content=body,
                headers={
                    "Content-Encoding": "gzip",
                    "Content-Type": "application/json",
                    SEQUENCE_HEADER: str(batch.sequence),
                },
            )
        except TransportError as error:
            raise DeliveryError(f"server unreachable: {type(error).__name__}") from error
        if response.status_code in (429, 503):
            retry = response.headers.get("retry-after", "")
            raise DeliveryError("server busy", float(retry) if retry.isdigit() else None)
        if response.status_code != 200:
            raise DeliveryError(f"batch refused ({response.status_code}): {_detail(response)}")
        return BatchAck.model_validate(response.json())

    def deliver(self, http: Client) -> int:
        """Send waiting batches until the outbox is empty or the server fails; return sent."""
        sent = 0
        while (batch := self.outbox.next_batch(self.settings.batch_size)) is not None:
            ack = self.send_batch(http, batch)
            if ack.sequence != batch.sequence:
                raise DeliveryError("the server acknowledged another batch")
            self.outbox.acknowledge(batch)
            sent += len(batch.events)
        return sent

    def keepalive(self, http: Client) -> KeepAliveReply | None:
        """Report health and task results; return the server's reply (configuration, tasks)."""
        report = KeepAlive(
            health={**self.outbox.counters(), "version": __version__},
            config_version=self.config_version,
            task_results=self._results[:1000],
        )
        try:
            response = http.post(f"{GATEWAY_PREFIX}/keepalive", json=report.model_dump(mode="json"))
        except TransportError:
            return None
        if response.status_code != 200:
            return None
        del self._results[: len(report.task_results)]
        return KeepAliveReply.model_validate(response.json())

    def apply(self, reply: KeepAliveReply, collectors: Collectors, responder: Responder) -> None:
        """Apply new group configuration and run the server's tasks."""
        if reply.config is not None and reply.config_version != self.config_version:
            config = merge(reply.config, self.settings.local_config)
            collectors.configure(config, local=self.settings.local_config)
            self.settings.logs = _log_sources(config.get("logs")) or self.settings.logs
            self.config_version = reply.config_version
        for task in reply.tasks:
            if task.action == "configure":  # the configuration itself rides on the reply
                result = {"config_version": self.config_version}
                self._results.append(TaskResult(task_id=task.id, ok=True, result=result))
            else:
                self._results.append(responder.run(task))

    def run(self, stop_after: float | None = None) -> None:
        """Collect and deliver until interrupted (or for `stop_after` seconds)."""
        tailer = FileTailer(self.outbox)
        collectors = Collectors(self.state_dir)
        collectors.configure(self.settings.local_config, local=self.settings.local_config)
        responder = Responder(self.state_dir, allowed=self.settings.allowed_actions)
        started = time.monotonic()
        next_keepalive = 0.0
        with self.http() as http:
            try:
                while stop_after is None or time.monotonic() - started < stop_after:
                    for source in self.settings.logs:
                        tailer.poll(source)
                    collectors.collect(self.outbox)
                    now = time.monotonic()
                    if now >= next_keepalive:
                        self._results.extend(responder.expire())
                        reply = self.keepalive(http)
                        if reply is not None:
                            self.apply(reply, collectors, responder)
                        next_keepalive = now + self.settings.keepalive_seconds
                    if now >= self._next_send:
                        self._try_deliver(http, now)
                    time.sleep(self.settings.poll_seconds)
                self._try_deliver(http, time.monotonic())
            finally:
                tailer.close()
                collectors.close()

    def _try_deliver(self, http: Client, now: float) -> None:
        try:
            self.deliver(http)
        except DeliveryError as error:
            wait = error.retry_after or self._backoff * random.uniform(0.5, 1.5)  # noqa: S311
            self._backoff = min(self._backoff * 2, 300.0)
            self._next_send = now + wait
            logger.warning("delivery paused %.1f s: %s", wait, error)
            return
        self._backoff = 1.0
        self._next_send = now + self.settings.batch_seconds


def _log_sources(items: Any) -> list[LogSource]:
    """Read `logs` configuration: strings `GLOB[::FORMAT]` or {"path", "format"} objects."""
    sources = []
    for item in items or []:
        if isinstance(item, dict):
            sources.append(
                LogSource(pattern=str(item["path"]), format=item.get("format", "syslog"))
            )
        else:
            pattern, _, fmt = str(item).partition("::")
            sources.append(LogSource(pattern=pattern, format=fmt or "syslog"))
    return sources


def settings_from(
    logs: list[str], values: dict[str, Any] | None = None, *, local: dict[str, Any] | None = None
) -> AgentSettings:
    """Build agent settings from `--log GLOB[::FORMAT]` options and the local configuration."""
    local = dict(local or {})
    sources = _log_sources(logs) + _log_sources(local.get("logs"))
    return AgentSettings(logs=sources, local_config=local, **(values or {}))
