"""Reading agent event batches safely: size limits, gzip, schema, and normalisation."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from puffin.core.errors import InvalidInput, PuffinError
from puffin.ingest.store import NewEvent
from puffin.ingest.windows import flatten_evtx_record

MAX_COMPRESSED_BYTES = 8 * 1024 * 1024
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
MAX_EVENTS_PER_BATCH = 20_000
MAX_EVENT_BYTES = 256 * 1024


class PayloadTooLarge(PuffinError):
    """The batch is bigger than the server accepts."""

    status_code = 413
    title = "Payload too large"


class UnsupportedEncoding(PuffinError):
    """The batch uses a content encoding the server does not read."""

    status_code = 415
    title = "Unsupported media type"


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Return the body decompressed, refusing bombs past MAX_DECOMPRESSED_BYTES."""
    if len(body) > MAX_COMPRESSED_BYTES:
        raise PayloadTooLarge(f"batches are limited to {MAX_COMPRESSED_BYTES} bytes on the wire")
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding != "gzip":
        raise UnsupportedEncoding(f"content encoding {encoding!r} is not supported; use gzip")
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, MAX_DECOMPRESSED_BYTES + 1)
    except zlib.error as error:
        raise InvalidInput(f"the gzip body is corrupt: {error}") from error
    if len(data) > MAX_DECOMPRESSED_BYTES or decompressor.unconsumed_tail:
        raise PayloadTooLarge(f"batches are limited to {MAX_DECOMPRESSED_BYTES} bytes unpacked")
    if not decompressor.eof:
        raise InvalidInput("the gzip body is truncated")
    return data


def compress(data: bytes) -> bytes:
    """Return gzip-compressed bytes (for tests and the agent)."""
    return gzip.compress(data, compresslevel=5)


def parse_json(data: bytes) -> Any:
    """Parse JSON, turning errors into a 422 with the position."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from error


def _event_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _windows_event(raw: dict[str, Any], index: int) -> dict[str, Any]:
    """Flatten an Event Log record the agent rendered in the EVTX shape."""
    try:
        flat = flatten_evtx_record(raw)
    except ValueError as error:
        raise InvalidInput(f"events[{index}]: {error}") from error
    for name in ("full_log", "timestamp", "agent"):
        if name in raw:
            flat[name] = raw[name]
    flat.setdefault("timestamp", flat.get("TimeCreated"))
    return flat


DECODED_MODULES = frozenset({"logcollector", "journald"})


def _decoded(raw: dict[str, Any], decode: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    """Add the decoder's fields to a text-log event; what the agent sent wins."""
    full_log = raw.get("full_log")
    if (
        raw.get("module") not in DECODED_MODULES
        or "decoder" in raw
        or not isinstance(full_log, str)
        or full_log.lstrip().startswith("{")
    ):
        return raw
    return {**decode(full_log), **raw}


def to_new_events(
    raw_events: list[Any], *, decode: Callable[[str], dict[str, Any]] | None = None
) -> list[NewEvent]:
    """Validate each event mapping and wrap it for the store; refuse the batch on any fault.

    With `decode`, text lines from log files and journald get their decoded fields
    (program, user, src_ip, …) so detection and searches can use them.
    """
    if len(raw_events) > MAX_EVENTS_PER_BATCH:
        raise PayloadTooLarge(f"a batch holds at most {MAX_EVENTS_PER_BATCH} events")
    events = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise InvalidInput(f"events[{index}] must be a JSON object")
        if isinstance(raw.get("Event"), dict):
            raw = _windows_event(raw, index)
        elif decode is not None:
            raw = _decoded(raw, decode)
        full_log = raw.get("full_log", "")
        if isinstance(full_log, str) and len(full_log) > MAX_EVENT_BYTES:
            raise PayloadTooLarge(f"events[{index}].full_log is longer than {MAX_EVENT_BYTES}")
        events.append(
            NewEvent(
                data=raw,
                event_time=_event_time(raw.get("timestamp") or raw.get("@timestamp")),
                module=str(raw.get("module", "log"))[:40],
                location=str(raw.get("location", ""))[:500],
                full_log=full_log if isinstance(full_log, str) else str(full_log),
            )
        )
    return events
