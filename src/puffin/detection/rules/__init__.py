"""Sigma rule content shipped with Puffin: the built-in pack and where to find it."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["builtin_pack_path"]


def builtin_pack_path() -> Path:
    """Return the folder of the built-in rule pack inside the installed package."""
    return Path(str(resources.files(__package__).joinpath("builtin")))
