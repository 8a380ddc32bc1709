"""A short-lived memory of verified agent credentials, so batches skip a query each."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from puffin.core.crypto import hash_token, tokens_equal
from puffin.core.state import AppState

AUTH_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class AgentIdentity:
    """An authenticated agent."""

    agent_id: uuid.UUID
    organisation_id: uuid.UUID


class AgentAuthCache:
    """Remembers verified credentials briefly so batches skip a database query each."""

    def __init__(self) -> None:
        self._entries: dict[uuid.UUID, tuple[str, uuid.UUID, float]] = {}

    def check(self, agent_id: uuid.UUID, credential: str) -> AgentIdentity | None:
        """Return the cached identity when this credential was verified recently."""
        entry = self._entries.get(agent_id)
        if entry is None or time.monotonic() - entry[2] > AUTH_CACHE_SECONDS:
            return None
        if not tokens_equal(entry[0], hash_token(credential)):
            return None
        return AgentIdentity(agent_id=agent_id, organisation_id=entry[1])

    def remember(self, identity: AgentIdentity, credential: str) -> None:
        """Cache a verified credential."""
        self._entries[identity.agent_id] = (
            hash_token(credential),
            identity.organisation_id,
            time.monotonic(),
        )

    def forget(self, agent_id: uuid.UUID) -> None:
        """Drop a cached credential (after revocation)."""
        self._entries.pop(agent_id, None)


def auth_cache(state: AppState) -> AgentAuthCache:
    """Return the application's agent credential cache, creating it on first use."""
    cache = state.extras.get("agent_auth_cache")
    if not isinstance(cache, AgentAuthCache):
        cache = AgentAuthCache()
        state.extras["agent_auth_cache"] = cache
    return cache
