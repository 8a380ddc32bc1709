"""Values of Sigma placeholders (`%known_cdcs%` with the `expand` modifier) read from a file.

The server reads them from its settings (`[detection.placeholders]`). `hunt`, `logtest`
and `puffin rules lint` take `--placeholders FILE`: a YAML mapping of names to lists, or
a TOML file — a Puffin settings file (its `[detection.placeholders]` table is used) or a
plain table of names.

    known_cdcs: [DC1, DC2, 10.0.0.10]
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

Placeholders = dict[str, list[str]]


class PlaceholderError(ValueError):
    """The placeholder file cannot be read or does not hold names and lists of values."""


def load_placeholders(path: Path) -> Placeholders:
    """Return the placeholder values in a YAML or TOML file; raise PlaceholderError."""
    try:
        text = path.read_text("utf-8")
    except OSError as error:
        raise PlaceholderError(f"cannot read {path}: {error.strerror or error}") from error
    try:
        if path.suffix.lower() == ".toml":
            document: Any = tomllib.loads(text)
            table = document.get("detection", {}).get("placeholders")
            document = table if isinstance(table, Mapping) else document
        else:
            document = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise PlaceholderError(f"{path} is not valid {_kind(path)}: {error}") from error
    return checked_placeholders(document if document is not None else {}, where=str(path))


def checked_placeholders(document: Any, *, where: str) -> Placeholders:
    """Return a mapping of names to lists of text values; raise PlaceholderError."""
    if not isinstance(document, Mapping):
        raise PlaceholderError(f"{where}: expected names mapped to lists of values")
    found: Placeholders = {}
    for name, values in document.items():
        if isinstance(values, (str, int, float)) and not isinstance(values, bool):
            values = [values]
        if not isinstance(values, list) or not all(
            isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values
        ):
            raise PlaceholderError(f"{where}: {name}: expected a list of text values")
        found[str(name)] = [str(value) for value in values]
    return found


def _kind(path: Path) -> str:
    return "TOML" if path.suffix.lower() == ".toml" else "YAML"
