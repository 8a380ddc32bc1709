"""Decide which MISP indicators are false positives: operator list, warninglists, then OpenTIP."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

from puffin.intel.misp_fixer.opentip import LookupReport, OpenTipClient, Query, normalise
from puffin.intel.misp_fixer.warninglists import (
    WarninglistIndex,
    as_network,
    hostname_of,
    relevant_parts,
)

_IP_TYPES = frozenset({"ip-src", "ip-dst", "ip-src|port", "ip-dst|port"})
_DOMAIN_TYPES = frozenset({"domain", "hostname"})
_HASH_TYPES = frozenset(
    {"md5", "sha1", "sha256", "filename|md5", "filename|sha1", "filename|sha256"}
)
SUPPORTED_TYPES = _IP_TYPES | _DOMAIN_TYPES | _HASH_TYPES | {"domain|ip"}
# What OpenTIP is asked for each type, part by part (see `relevant_parts`).
_OPENTIP_KINDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(_IP_TYPES, ("ip",)),
    **dict.fromkeys(_DOMAIN_TYPES, ("domain",)),
    **dict.fromkeys(_HASH_TYPES, ("hash",)),
    "domain|ip": ("domain", "ip"),
}

Item = tuple[str, str]  # (MISP attribute type, value)


@dataclass(frozen=True)
class Verdict:
    """Why a value is a false positive."""

    source: str  # "list" | "warninglist" | "opentip"
    detail: str  # the matching list entry, the warninglist name(s), or "Green/<verdict>"


@dataclass
class Classification:
    """The verdicts of one run; OpenTIP counts are distinct (kind, value) lookups."""

    verdicts: dict[Item, Verdict] = field(default_factory=dict)
    lookups: int = 0
    cached: int = 0
    not_looked_up: int = 0
    errors: list[str] = field(default_factory=list)


class CommonFalsePositives:
    """The operator's own list: exact values; a domain also covers its sub-domains."""

    def __init__(self, entries: Sequence[str]) -> None:
        self._entries: dict[str, str] = {}
        for entry in entries:
            key = _canonical(entry)
            if key:
                self._entries.setdefault(key, entry.strip())

    def match(self, value: str) -> str | None:
        """Return the entry that covers this single value, or None."""
        key = _canonical(value)
        if key in self._entries:
            return self._entries[key]
        if as_network(key) is not None:
            return None
        host = hostname_of(key) or ""
        while "." in host:
            host = host.split(".", 1)[1]
            if host in self._entries:
                return self._entries[host]
        return None


def _canonical(value: str) -> str:
    text = value.strip().rstrip(".").lower()
    network = as_network(text)
    if network is not None and network.num_addresses == 1 and "/" not in text:
        return str(network.network_address)
    return text


class Classifier:
    """Runs the decision chain over (type, value) items; one instance serves many runs.

    The chain stops at the first verdict. A composite such as `domain|ip` is a false positive
    when the operator's list or a warninglist names any of its indicator parts (MISP's rule),
    but OpenTIP must vouch for every part, because a remote reputation is weaker evidence.
    """

    def __init__(
        self,
        *,
        common_false_positives: Sequence[str],
        warninglists: WarninglistIndex | None,
        opentip: OpenTipClient | None,
    ) -> None:
        self._common = CommonFalsePositives(common_false_positives)
        self._warninglists = warninglists
        self._opentip = opentip

    def classify(self, items: Sequence[Item], *, remote_limit: int) -> Classification:
        """Return the false-positive verdicts for these items; others stay undecided."""
        result = Classification()
        undecided: list[Item] = []
        for item in dict.fromkeys(items):
            if item[0] not in SUPPORTED_TYPES:
                continue
            verdict = self._local_verdict(*item)
            if verdict is not None:
                result.verdicts[item] = verdict
            else:
                undecided.append(item)
        if self._opentip is not None and undecided:
            self._ask_opentip(self._opentip, undecided, remote_limit, result)
        return result

    def _local_verdict(self, attribute_type: str, value: str) -> Verdict | None:
        for part in relevant_parts(attribute_type, value):
            entry = self._common.match(part)
            if entry is not None:
                return Verdict("list", entry)
        if self._warninglists is not None:
            names = self._warninglists.match_attribute(attribute_type, value)
            if names:
                return Verdict("warninglist", ", ".join(names))
        return None

    def _ask_opentip(
        self, client: OpenTipClient, items: list[Item], limit: int, result: Classification
    ) -> None:
        needs = {item: _opentip_queries(*item) for item in items}
        queries = list(dict.fromkeys(query for wanted in needs.values() for query in wanted))
        try:
            report = client.lookup(queries, limit=limit)
        except (httpx.HTTPError, sqlite3.Error, OSError) as error:
            result.not_looked_up = len(queries)
            result.errors.append(f"OpenTIP unavailable: {type(error).__name__}: {error}")
            return
        _copy_counts(report, result)
        for item, wanted in needs.items():
            answers = [report.reputations.get(query) for query in wanted]
            if wanted and all(a is not None and client.policy.is_benign(a) for a in answers):
                details = [f"{a.zone}/{a.verdict}" for a in answers if a is not None]
                result.verdicts[item] = Verdict("opentip", " + ".join(details))


def _copy_counts(report: LookupReport, result: Classification) -> None:
    result.lookups = report.lookups
    result.cached = report.cached
    result.not_looked_up = report.not_looked_up
    result.errors.extend(report.errors)


def _opentip_queries(attribute_type: str, value: str) -> list[Query]:
    """Return the OpenTIP queries that must all vouch for this item; [] when none can."""
    parts = relevant_parts(attribute_type, value)
    kinds = _OPENTIP_KINDS[attribute_type]
    if len(parts) != len(kinds):
        return []
    try:
        return [(kind, normalise(kind, part)) for kind, part in zip(kinds, parts, strict=True)]
    except ValueError:
        return []  # a CIDR block, a malformed value: nothing OpenTIP can answer
