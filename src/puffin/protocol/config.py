"""How agent configurations combine, shared by the server and the agent.

The server merges an agent's groups in order; the agent merges its local file on top of
what the server sent. Both use the same rule, so an operator reads it once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_config(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `extra` merged in: mappings deeply, lists joined, values replaced."""
    merged = dict(base)
    for key, value in extra.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = merge_config(current, value)
        elif isinstance(value, list) and isinstance(current, list):
            merged[key] = current + [item for item in value if item not in current]
        else:
            merged[key] = value
    return merged
