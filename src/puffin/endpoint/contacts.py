"""Agents' call-ins, noted in memory and written together every few seconds.

A keep-alive used to update its agent's row in a transaction of its own: with a thousand
agents that is a write every 30 ms, each waiting for the database's write lock. The book
keeps what each agent reported (last seen, address, health, events sent, configuration
applied, allowed actions) and a flusher thread writes everything noted in one
transaction every `FLUSH_SECONDS`, so the console shows a call-in that recent at worst.
The application starts the flusher and stops it (with a last flush) in its lifespan;
`flush()` writes at once, for callers (and tests) that need the rows current now.
"""

from __future__ import annotations

import logging
import threading
import uuid

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from puffin.core.db import transaction
from puffin.core.state import AppState
from puffin.endpoint.service.agents import Contact, record_contacts

logger = logging.getLogger(__name__)

FLUSH_SECONDS = 2.0
MAX_PENDING_PER_AGENT = 8  # beyond, the oldest two call-ins are merged into one
STATE_KEY = "agent_contacts"


def _merged(older: Contact, newer: Contact) -> Contact:
    """Return one call-in standing for both: the newer report, the events of both."""
    return Contact(
        seen_at=newer.seen_at,
        ip=newer.ip or older.ip,
        health=newer.health if newer.health is not None else older.health,
        events=older.events + newer.events,
        config_applied=(
            newer.config_applied if newer.config_applied is not None else older.config_applied
        ),
        allowed_actions=(
            newer.allowed_actions if newer.allowed_actions is not None else older.allowed_actions
        ),
    )


class ContactBook:
    """Call-ins waiting to be written, and the thread that writes them."""

    def __init__(self, factory: sessionmaker[Session], interval: float = FLUSH_SECONDS) -> None:
        self.factory = factory
        self.interval = interval
        self._pending: dict[uuid.UUID, list[Contact]] = {}
        self._lock = threading.Lock()  # guards _pending
        self._flushing = threading.Lock()  # one flush at a time, in call-in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def note(self, agent_id: uuid.UUID, contact: Contact) -> None:
        """Remember a call-in; it is written with the next flush."""
        with self._lock:
            contacts = self._pending.setdefault(agent_id, [])
            contacts.append(contact)
            if len(contacts) > MAX_PENDING_PER_AGENT:
                contacts[:2] = [_merged(contacts[0], contacts[1])]

    def pending(self) -> int:
        """Return how many call-ins wait to be written."""
        with self._lock:
            return sum(len(contacts) for contacts in self._pending.values())

    def flush(self) -> int:
        """Write every call-in noted so far in one transaction; return how many.

        When the database refuses (busy, unreachable), the call-ins are kept for the next
        flush and the failure is logged; the error is not raised.
        """
        with self._flushing:
            with self._lock:
                taken, self._pending = self._pending, {}
            if not taken:
                return 0
            contacts = [(agent_id, c) for agent_id, items in taken.items() for c in items]
            try:
                with transaction(self.factory) as session:
                    record_contacts(session=session, contacts=contacts)
            except SQLAlchemyError as error:
                self._put_back(taken)
                logger.warning(
                    "could not write %d agent call-ins (%s); trying again in %.0f s",
                    len(contacts),
                    type(error).__name__,
                    self.interval,
                )
                return 0
            return len(contacts)

    def _put_back(self, taken: dict[uuid.UUID, list[Contact]]) -> None:
        with self._lock:
            for agent_id, older in taken.items():
                newer = self._pending.get(agent_id, [])
                contacts = older + newer
                while len(contacts) > MAX_PENDING_PER_AGENT:
                    contacts[:2] = [_merged(contacts[0], contacts[1])]
                self._pending[agent_id] = contacts

    def start(self) -> None:
        """Start the flusher thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="puffin-agent-contacts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the flusher thread and write what is still noted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the flusher must outlive any one bad flush
                logger.exception("writing agent call-ins failed")


def contact_book(state: AppState) -> ContactBook:
    """Return the application's book of agent call-ins, creating it on first use."""
    book = state.extras.get(STATE_KEY)
    if not isinstance(book, ContactBook):
        book = ContactBook(state.session_factory)
        state.extras[STATE_KEY] = book
    return book
