"""The shape every agent collector has, so the run loop can drive them alike."""

from __future__ import annotations

from typing import Protocol

from puffin.agent.outbox import Outbox


class Collector(Protocol):
    """Something that turns a source on the endpoint into events in the outbox.

    `collect` is called on every turn of the agent's loop (about once a second) and does
    only what is due at `now` (monotonic seconds); it writes events and its saved position
    to the outbox in one `Outbox.add` call, so a crash never loses or repeats them. It
    returns how many events it wrote and never raises for a problem in the source: it
    reports that as an event (`module`, `title`, `full_log`) instead.
    """

    name: str

    def collect(self, outbox: Outbox, now: float) -> int:
        """Write what is due into the outbox; return how many events were written."""
        ...

    def close(self) -> None:
        """Release files, watches and child processes."""
        ...
