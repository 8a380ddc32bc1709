"""The syslog receiver stores messages sent over real UDP, TCP and TLS sockets."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid

import pytest

from puffin.core.db import make_engine
from puffin.core.tls import generate_self_signed
from puffin.ingest.store import EventQuery, EventStore
from puffin.ingest.syslog import SyslogReceiver

ORG = uuid.uuid4()
RFC3164 = (
    "<38>Nov 22 09:15:01 fw01 sshd[811]: Failed password for root from 203.0.113.5 port 4222 ssh2"
)
RFC5424 = '<165>1 2026-11-22T09:15:02.003Z edge01 nginx 42 ID47 [ex@32473 a="1"] GET /index.html'


@pytest.fixture
def store(tmp_path, database_url):
    engine = make_engine(database_url or f"sqlite:///{tmp_path / 'events.db'}")
    event_store = EventStore(engine)
    event_store.create_schema()
    yield event_store
    engine.dispose()


def _receiver(store: EventStore, sources: dict[str, uuid.UUID]) -> SyslogReceiver:
    def resolve(sender: str) -> uuid.UUID:
        return sources.setdefault(sender, uuid.uuid4())

    return SyslogReceiver(store=store, organisation_id=ORG, resolve_source=resolve)


async def _wait_for(store: EventStore, count: int) -> list:
    for _ in range(100):
        events = store.search(EventQuery(organisation_id=ORG), limit=1000)
        if len(events) >= count:
            return events
        await asyncio.sleep(0.05)
    return store.search(EventQuery(organisation_id=ORG), limit=1000)


def test_udp_and_tcp_messages_are_stored_with_their_sender(store):
    sources: dict[str, uuid.UUID] = {}

    async def scenario() -> list:
        receiver = _receiver(store, sources)
        ports = await receiver.start(udp_port=0, tcp_port=0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(RFC3164.encode(), ("127.0.0.1", ports["udp"]))
        _, writer = await asyncio.open_connection("127.0.0.1", ports["tcp"])
        framed = f"{len(RFC5424.encode())} {RFC5424}".encode()
        writer.write(framed + (RFC3164 + "\n").encode())
        await writer.drain()
        writer.close()
        events = await _wait_for(store, 3)
        await receiver.stop()
        return events

    events = asyncio.run(scenario())
    logs = sorted(event.full_log for event in events)
    assert logs == sorted([RFC3164, RFC3164, RFC5424])
    assert {event.source_id for event in events} == {sources["127.0.0.1"]}
    assert all(event.data["location"] == "syslog:127.0.0.1" for event in events)


def test_tls_listener_accepts_an_encrypting_sender(store, tmp_path):
    paths = generate_self_signed(tmp_path / "s.crt", tmp_path / "s.key", ["127.0.0.1"])
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(paths.cert_file, paths.key_file)
    client_context = ssl.create_default_context(cafile=str(paths.cert_file))

    async def scenario() -> list:
        receiver = _receiver(store, {})
        ports = await receiver.start(tls_port=0, tls_context=server_context)
        _, writer = await asyncio.open_connection(
            "127.0.0.1", ports["tls"], ssl=client_context, server_hostname="127.0.0.1"
        )
        writer.write((RFC3164 + "\n").encode())
        await writer.drain()
        writer.close()
        events = await _wait_for(store, 1)
        await receiver.stop()
        return events

    events = asyncio.run(scenario())
    assert [event.full_log for event in events] == [RFC3164]


def test_a_failing_decoder_keeps_the_message(store):
    def broken(line: str) -> dict:
        raise RuntimeError("decoder bug")

    async def scenario() -> list:
        receiver = _receiver(store, {})
        receiver.decode = broken
        receiver.accept("192.0.2.1", RFC3164.encode())
        await receiver.flush()
        assert receiver.stats.errors == 1
        return store.search(EventQuery(organisation_id=ORG))

    events = asyncio.run(scenario())
    assert [event.full_log for event in events] == [RFC3164]
