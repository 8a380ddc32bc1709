"""A syslog receiver (RFC 3164 and RFC 5424 over UDP, TCP and TCP with TLS).

Firewalls and appliances send here. Messages are framed (RFC 6587: octet counting or
newline), decoded, and written to the event store in batches; each sender appears like
an agent, named after its address: every few seconds (`contact_seconds`) the receiver
tells the registry how many events each sender delivered (`note_deliveries`), so a
sender's last contact and event rate stay current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from puffin.ingest.store import EventStore, NewEvent

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024
FLUSH_INTERVAL_SECONDS = 0.2
FLUSH_SIZE = 1000
CONTACT_SECONDS = 5.0

Decode = Callable[[str], dict[str, Any]]
ResolveSource = Callable[[str], uuid.UUID]
NoteDeliveries = Callable[[dict[uuid.UUID, int]], None]


def plain_decode(line: str) -> dict[str, Any]:
    """Keep the line as it is; used when no decoder is configured."""
    return {"full_log": line}


@dataclass
class ReceiverStats:
    """Counters the operator can read from the metrics page."""

    received: int = 0
    stored: int = 0
    oversized: int = 0
    errors: int = 0


@dataclass
class SyslogReceiver:
    """Receives syslog messages and stores them for one organisation."""

    store: EventStore
    organisation_id: uuid.UUID
    resolve_source: ResolveSource
    decode: Decode = plain_decode
    note_deliveries: NoteDeliveries | None = None
    contact_seconds: float = CONTACT_SECONDS
    stats: ReceiverStats = field(default_factory=ReceiverStats)
    _pending: list[tuple[str, str]] = field(default_factory=list)
    _servers: list[Any] = field(default_factory=list)
    _flusher: asyncio.Task[None] | None = None
    _sources: dict[str, uuid.UUID] = field(default_factory=dict)
    _delivered: dict[uuid.UUID, int] = field(default_factory=dict)
    _noted_at: float = 0.0

    async def start(
        self,
        *,
        host: str = "127.0.0.1",
        udp_port: int | None = None,
        tcp_port: int | None = None,
        tls_port: int | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> dict[str, int]:
        """Start the listeners asked for; return the bound ports by protocol."""
        loop = asyncio.get_running_loop()
        ports: dict[str, int] = {}
        if udp_port is not None:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, udp_port)
            )
            self._servers.append(transport)
            ports["udp"] = transport.get_extra_info("sockname")[1]
        if tcp_port is not None:
            server = await asyncio.start_server(self._handle_stream, host, tcp_port)
            self._servers.append(server)
            ports["tcp"] = server.sockets[0].getsockname()[1]
        if tls_port is not None:
            if tls_context is None:
                raise ValueError("a TLS listener needs a TLS context")
            server = await asyncio.start_server(
                self._handle_stream, host, tls_port, ssl=tls_context
            )
            self._servers.append(server)
            ports["tls"] = server.sockets[0].getsockname()[1]
        self._flusher = asyncio.create_task(self._flush_forever())
        return ports

    async def stop(self) -> None:
        """Close the listeners and store what is still pending."""
        for server in self._servers:
            server.close()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()
        await self._note_deliveries()

    def accept(self, sender: str, raw: bytes) -> None:
        """Queue one message from a sender."""
        self.stats.received += 1
        if len(raw) > MAX_MESSAGE_BYTES:
            self.stats.oversized += 1
            raw = raw[:MAX_MESSAGE_BYTES]
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n\x00")
        if line:
            self._pending.append((sender, line))

    async def flush(self) -> int:
        """Decode and store the queued messages; return how many were stored."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        by_source: dict[str, list[NewEvent]] = {}
        for sender, line in pending:
            by_source.setdefault(sender, []).append(self._event(sender, line))
        stored = 0
        for sender, events in by_source.items():
            source_id = await asyncio.to_thread(self._source, sender)
            result = await asyncio.to_thread(
                self.store.append,
                organisation_id=self.organisation_id,
                source_id=source_id,
                events=events,
            )
            stored += result.stored
            self._delivered[source_id] = self._delivered.get(source_id, 0) + result.stored
        self.stats.stored += stored
        if time.monotonic() - self._noted_at >= self.contact_seconds:
            await self._note_deliveries()
        return stored

    async def _note_deliveries(self) -> None:
        """Tell the registry what each sender delivered; the events are stored already."""
        if self.note_deliveries is None or not self._delivered:
            return
        delivered, self._delivered = self._delivered, {}
        self._noted_at = time.monotonic()
        try:
            await asyncio.to_thread(self.note_deliveries, delivered)
        except Exception:  # the registry's view must never hold up storing messages
            self.stats.errors += 1
            logger.exception("noting the syslog senders' deliveries failed")

    def _source(self, sender: str) -> uuid.UUID:
        if sender not in self._sources:
            self._sources[sender] = self.resolve_source(sender)
        return self._sources[sender]

    def _event(self, sender: str, line: str) -> NewEvent:
        try:
            data = dict(self.decode(line))
        except Exception:  # a decoder bug must not lose the message
            self.stats.errors += 1
            logger.exception("syslog decoder failed")
            data = {"full_log": line}
        data.setdefault("full_log", line)
        data["location"] = f"syslog:{sender}"
        data["module"] = "syslog"
        return NewEvent(data=data, module="syslog", location=f"syslog:{sender}", full_log=line)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            try:
                await self.flush()
            except Exception:
                self.stats.errors += 1
                logger.exception("storing syslog messages failed; they will be retried")

    async def _handle_stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        sender = str(peer[0]) if peer else "unknown"
        try:
            await read_frames(reader, lambda raw: self.accept(sender, raw))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()
        if len(self._pending) >= FLUSH_SIZE:
            await self.flush()


async def read_frames(reader: asyncio.StreamReader, on_frame: Callable[[bytes], None]) -> None:
    """Read RFC 6587 frames: `LEN SP MSG` (octet counting) or newline-terminated lines."""
    while True:
        first = await reader.read(1)
        if not first:
            return
        if first.isdigit():
            digits = first + await reader.readuntil(b" ")
            length = int(digits[:-1])
            if length > MAX_MESSAGE_BYTES * 4:
                raise ConnectionError("frame too large")
            on_frame(await reader.readexactly(length))
        else:
            try:
                rest = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as partial:
                rest = partial.partial
            except asyncio.LimitOverrunError:
                rest = await reader.read(MAX_MESSAGE_BYTES)
            on_frame(first + rest)


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: SyslogReceiver) -> None:
        self.receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.receiver.accept(str(addr[0]), data)
