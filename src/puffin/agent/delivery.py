"""Sending the outbox's batches: acknowledged, retried later, split, or quarantined.

What the server's answer means for a batch:

- 200: stored (or stored before: a duplicate); the batch leaves the outbox.
- 401, 403 (credential refused), 404, 405 (wrong address or a proxy in the way), 408,
  409, 425, 429 and every 5xx: nothing is wrong with the batch; it is sent again after a
  back-off (`Retry-After` honoured).
- Any other 4xx (400, 413, 415, 422, …): the server will never take this batch as it is.
  It is split in halves and retried; an event refused on its own is quarantined (kept in
  the outbox's dead letters, counted, announced by one event), so it cannot block the
  events behind it.
"""

from __future__ import annotations

import gzip
import json
import logging
from dataclasses import dataclass

from puffin.agent.enrolment import detail
from puffin.agent.http import Client, TransportError
from puffin.agent.outbox import Batch, Outbox
from puffin.protocol.messages import GATEWAY_PREFIX, SEQUENCE_HEADER, BatchAck

logger = logging.getLogger(__name__)

RETRY_LATER = frozenset({401, 403, 404, 405, 408, 409, 425, 429})


class DeliveryError(Exception):
    """The server did not take the batch; try again later (after `retry_after` seconds)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchRefused(Exception):
    """The server refused the batch for what it holds; sending it again cannot help."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass
class Delivered:
    """What one delivery round did."""

    sent: int = 0
    quarantined: int = 0


def send_batch(http: Client, batch: Batch) -> BatchAck:
    """Send one batch; return the acknowledgement, or raise DeliveryError or BatchRefused."""
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
    status = response.status_code
    if status == 200:
        return BatchAck.model_validate(response.json())
    if status in RETRY_LATER or status >= 500:
        retry = response.headers.get("retry-after", "").strip()
        wait = float(retry) if retry.isdigit() and status in (429, 503) else None
        raise DeliveryError(f"batch not taken ({status}): {detail(response)}", wait)
    raise BatchRefused(status, detail(response))


def deliver(http: Client, outbox: Outbox, batch_size: int) -> Delivered:
    """Send waiting batches until the outbox is empty; raise DeliveryError to pause."""
    done = Delivered()
    while (batch := outbox.next_batch(batch_size)) is not None:
        try:
            ack = send_batch(http, batch)
        except BatchRefused as refusal:
            if outbox.split(batch):
                continue
            done.quarantined += outbox.quarantine(
                batch, status=refusal.status, reason=refusal.reason
            )
            logger.warning("batch %s quarantined: %s", batch.sequence, refusal)
            continue
        if ack.sequence != batch.sequence:
            raise DeliveryError("the server acknowledged another batch")
        outbox.acknowledge(batch)
        done.sent += len(batch.events)
    return done
