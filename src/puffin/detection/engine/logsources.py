"""Which events a Sigma logsource covers: a mapping that is data, read from YAML.

A rule's logsource (product, category, service) becomes a list of alternatives; each
alternative is a set of field conditions on the event (`Channel`, `EventID`, `program`,
…) that must all hold. Events are grouped by the values of those few fields (the
event's *kind*), so the engine decides once per kind which rules apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import yaml

# libyaml's parser when PyYAML has it: the same data, about fifty times faster.
SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
PRESENT = "*"
EXPLICIT_FIELDS = ("logsource_product", "logsource_category", "logsource_service")


@dataclass(frozen=True)
class Alternative:
    """Field conditions that must all hold, and field aliases for the events they select."""

    conditions: tuple[tuple[str, frozenset[str]], ...]
    aliases: tuple[tuple[str, str], ...] = ()

    def matches(self, kind: Mapping[str, Any]) -> bool:
        """Return True when the event kind meets every condition."""
        return all(_meets(kind.get(name), wanted) for name, wanted in self.conditions)


def _meets(value: Any, wanted: frozenset[str]) -> bool:
    if value is None or value == "":
        return False
    if PRESENT in wanted:
        return True
    if isinstance(value, (list, tuple)):
        return any(str(item).lower() in wanted for item in value)
    return str(value).lower() in wanted


def _alternative(spec: Mapping[str, Any]) -> Alternative:
    conditions = []
    aliases: tuple[tuple[str, str], ...] = ()
    for name, wanted in spec.items():
        if name == "aliases":
            aliases = tuple(sorted((str(k), str(v)) for k, v in dict(wanted).items()))
            continue
        values = wanted if isinstance(wanted, list) else [wanted]
        conditions.append((str(name), frozenset(str(v).lower() for v in values)))
    return Alternative(tuple(sorted(conditions)), aliases)


def _merge(left: Alternative, right: Alternative) -> Alternative | None:
    """Return the alternative requiring both, or None when they cannot both hold."""
    merged = dict(left.conditions)
    for name, wanted in right.conditions:
        if name in merged:
            if PRESENT in wanted:
                continue
            if PRESENT not in merged[name]:
                wanted = merged[name] & wanted
                if not wanted:
                    return None
        merged[name] = wanted
    return Alternative(
        tuple(sorted(merged.items())), tuple(sorted({*left.aliases, *right.aliases}))
    )


@dataclass(frozen=True)
class LogsourceMap:
    """The mapping from Sigma logsources to event conditions."""

    products: Mapping[str, Mapping[str, Any]]
    categories: Mapping[str, Sequence[Alternative]]
    kind_fields: tuple[str, ...] = field(default=())

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LogsourceMap:
        """Build the map from its YAML structure."""
        products: dict[str, dict[str, Any]] = {}
        names: set[str] = set(EXPLICIT_FIELDS)
        for product, spec in (data.get("products") or {}).items():
            products[str(product)] = {
                "any": [_alternative(a) for a in spec.get("any") or []],
                "services": _section(spec.get("services")),
                "categories": _section(spec.get("categories")),
            }
        categories = _section(data.get("categories"))
        for alternatives in _all_alternatives(products, categories):
            names.update(name for name, _ in alternatives.conditions)
        return cls(products, categories, tuple(sorted(names)))

    @classmethod
    def default(cls) -> LogsourceMap:
        """Return the mapping shipped with Puffin."""
        text = resources.files(__package__).joinpath("data/logsources.yml").read_text("utf-8")
        return cls.from_data(yaml.load(text, Loader=SafeLoader))  # noqa: S506 - a safe loader

    def alternatives(
        self, product: str | None, category: str | None, service: str | None
    ) -> tuple[list[Alternative], list[str]]:
        """Return the alternatives for a logsource, and what was not mapped (for lint)."""
        product_spec = self.products.get(product or "")
        parts: list[list[Alternative]] = []
        unmapped: list[str] = []
        for kind, name in (("category", category), ("service", service)):
            if not name:
                continue
            section = "categories" if kind == "category" else "services"
            found = (product_spec or {}).get(section, {}).get(name)
            if found is None and kind == "category":
                found = self.categories.get(name)
            if found is None:
                unmapped.append(f"{kind} {name}")
            else:
                parts.append(list(found))
        if product and product_spec is None:
            unmapped.append(f"product {product}")
        if unmapped:
            return [_explicit(product, category, service)], unmapped
        if not parts:
            parts.append(list(product_spec["any"]) if product_spec else [Alternative(())])
        return _cross(parts), []


def _explicit(product: str | None, category: str | None, service: str | None) -> Alternative:
    values = dict(zip(EXPLICIT_FIELDS, (product, category, service), strict=True))
    return _alternative({name: value for name, value in values.items() if value})


def _cross(parts: Sequence[Sequence[Alternative]]) -> list[Alternative]:
    result = list(parts[0])
    for options in parts[1:]:
        merged = [_merge(left, right) for left in result for right in options]
        result = [alternative for alternative in merged if alternative is not None]
    return result


def _section(spec: Any) -> dict[str, list[Alternative]]:
    return {str(name): [_alternative(a) for a in alts] for name, alts in (spec or {}).items()}


def _all_alternatives(
    products: Mapping[str, Mapping[str, Any]], categories: Mapping[str, Sequence[Alternative]]
) -> Iterable[Alternative]:
    for spec in products.values():
        yield from spec["any"]
        for section in ("services", "categories"):
            for alternatives in spec[section].values():
                yield from alternatives
    for alternatives in categories.values():
        yield from alternatives
