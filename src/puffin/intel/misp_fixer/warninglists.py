"""An index of MISP warninglists, built once, that says which lists contain a value."""

from __future__ import annotations

import bisect
import functools
import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ALL_LISTS = "*"

# Lists that name infrastructure attackers use as much as anyone (dynamic DNS, URL shorteners,
# "living off trusted sites", VPN exits, parking, disposable mail, IPFS gateways): a match is
# context for an analyst, not evidence of a false positive, so they are left out by default.
CONTEXT_LISTS: frozenset[str] = frozenset(
    {
        "disposable-email",
        "dynamic-dns",
        "link-in-bio",
        "lots-project",
        "parking-domain",
        "parking-domain-ns",
        "public-ipfs-gateways",
        "url-shortener",
        "vpn-ipv4",
        "vpn-ipv6",
    }
)

# The public-suffix and TLD lists ship as warninglists. Sub-domain matching stops at a public
# suffix, so a listed "github.io" or "duckdns.org" never vouches for every site under it.
_PUBLIC_SUFFIX_LISTS = frozenset(
    {
        "second-level-tlds",
        "tlds",
        "Second level TLDs as known by Mozilla Foundation",
        "TLDs as known by IANA",
    }
)
_LIST_TYPES = frozenset({"cidr", "string", "substring", "hostname", "regex"})
_REGEX_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
# Composite MISP types whose second part is only a port (the first part is the indicator).
_ADDRESS_WITH_PORT = frozenset({"ip-src|port", "ip-dst|port", "hostname|port"})

Document = Mapping[str, Any]
ListIds = tuple[int, ...]


@dataclass(frozen=True)
class Warninglist:
    """One selected list: its folder key, MISP name, match type and attribute types covered."""

    key: str
    name: str
    type: str
    attribute_types: frozenset[str] | None  # None: every type, as MISP does without the field
    entries: int

    def applies_to(self, attribute_type: str | None) -> bool:
        """Return whether this list is consulted for an attribute of this MISP type."""
        if attribute_type is None or self.attribute_types is None:
            return True
        return attribute_type in self.attribute_types


def package_lists_folder() -> Path:
    """Return the `lists` folder of the warninglists that ship with pymispwarninglists."""
    import pymispwarninglists

    return Path(pymispwarninglists.__file__).parent / "data" / "misp-warninglists" / "lists"


def relevant_parts(attribute_type: str, value: str) -> list[str]:
    """Split a MISP value into the parts that carry an indicator (no ports, no file names)."""
    if "|" not in attribute_type and attribute_type != "malware-sample":
        return [value]
    left, separator, right = value.partition("|")
    if not separator:
        return [value]
    if attribute_type in _ADDRESS_WITH_PORT:
        return [left]
    if attribute_type.startswith("filename|") or attribute_type == "malware-sample":
        return [value.rpartition("|")[2]]
    return [left, right]


def hostname_of(value: str) -> str | None:
    """Return the host that a domain, URL or e-mail address names, lower-cased, or None."""
    if "://" in value:
        try:
            host = urlsplit(value).hostname or ""
        except ValueError:
            return None
    elif "@" in value:
        host = value.rpartition("@")[2]
    else:
        host = value.split("/", 1)[0]
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit() and ":" not in name:
            host = name
    host = host.strip().rstrip(".").lower()
    return host if host and " " not in host else None


def as_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Return the address or CIDR block a value names, or None when it is not one."""
    if not value or not (value[0].isdigit() or ":" in value):
        return None
    return _parsed_network(value)


@functools.lru_cache(maxsize=1 << 16)
def _parsed_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """Parse once per distinct value: a run asks the list, the index and OpenTIP in turn."""
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        return None


def compile_misp_regex(entry: str) -> re.Pattern[str]:
    """Compile a delimited PHP-style expression such as `/^abuse@/i` for Python's `re`."""
    delimiter = entry[:1]
    end = entry.rfind(delimiter)
    if not delimiter or delimiter.isalnum() or delimiter == "\\" or end <= 0:
        raise ValueError(f"not a delimited regular expression: {entry!r}")
    flags = 0
    for letter in entry[end + 1 :]:
        flags |= _REGEX_FLAGS.get(letter, 0)
    return re.compile(entry[1:end], flags)


class _Ranges:
    """Disjoint address segments of one IP version, each with the lists covering it (bisect)."""

    def __init__(self, intervals: list[tuple[int, int, int]]) -> None:
        events = sorted(
            [(low, 1, list_id) for low, _, list_id in intervals]
            + [(high + 1, -1, list_id) for _, high, list_id in intervals]
        )
        self.starts: list[int] = []
        self.owners: list[ListIds] = []
        active: dict[int, int] = {}
        interned: dict[ListIds, ListIds] = {}
        position = 0
        while position < len(events):
            point = events[position][0]
            while position < len(events) and events[position][0] == point:
                _, delta, list_id = events[position]
                active[list_id] = active.get(list_id, 0) + delta
                if not active[list_id]:
                    del active[list_id]
                position += 1
            covering = tuple(sorted(active))
            if not self.owners or self.owners[-1] != covering:
                self.starts.append(point)
                self.owners.append(interned.setdefault(covering, covering))

    def covering(self, low: int, high: int) -> set[int]:
        """Return the lists that contain every address from low to high."""
        first = bisect.bisect_right(self.starts, low) - 1
        if first < 0:
            return set()
        found = set(self.owners[first])
        last = bisect.bisect_right(self.starts, high) - 1
        for segment in range(first + 1, last + 1):
            found.intersection_update(self.owners[segment])
            if not found:
                break
        return found


class _Builder:
    """Collects the entries of every selected list into the lookup tables of the index."""

    def __init__(self) -> None:
        self.lists: list[Warninglist] = []
        self.exact: dict[str, ListIds] = {}
        self.suffix: dict[str, ListIds] = {}
        self.intervals: dict[int, list[tuple[int, int, int]]] = {4: [], 6: []}
        self.regexes: list[tuple[int, re.Pattern[str]]] = []
        self.public_suffixes: set[str] = set()
        self.errors: list[str] = []

    def add(self, key: str, document: Document) -> None:
        """Add one list; a malformed list is reported in `errors`, never half-loaded."""
        list_type = document.get("type", "string")
        list_type = list_type[0] if isinstance(list_type, list) and list_type else list_type
        entries = document.get("list")
        name = document.get("name")
        if list_type not in _LIST_TYPES or not isinstance(entries, list) or not name:
            self.errors.append(f"{key}: not a warninglist (needs name, list and a known type)")
            return
        attributes = document.get("matching_attributes") or None
        warninglist = Warninglist(
            key=key,
            name=str(name),
            type=str(list_type),
            attribute_types=frozenset(attributes) if attributes else None,
            entries=len(entries),
        )
        self.lists.append(warninglist)
        self._add_entries(len(self.lists) - 1, warninglist, [str(e) for e in entries])

    def add_public_suffixes(self, document: Document) -> None:
        """Remember the entries of a TLD or public-suffix list as boundaries for sub-domains."""
        for entry in document.get("list") or ():
            self.public_suffixes.add(str(entry).strip().strip(".").lower())

    def _add_entries(self, list_id: int, warninglist: Warninglist, entries: list[str]) -> None:
        single = (list_id,)
        if warninglist.type == "cidr":
            self._add_networks(list_id, warninglist, entries)
        elif warninglist.type == "regex":
            self._add_regexes(list_id, warninglist, entries)
        elif warninglist.type == "string":
            for entry in entries:
                text = entry.strip().lower()
                # A leading dot is the lists' own way to say "any sub-domain of".
                if text.startswith("."):
                    _put(self.suffix, text.strip("."), single)
                elif text:
                    _put(self.exact, text, single)
        else:  # hostname, and substring matched on label boundaries (see module docs)
            for entry in entries:
                text = entry.strip().strip(".").lower()
                if text:
                    _put(self.suffix, text, single)

    def _add_networks(self, list_id: int, warninglist: Warninglist, entries: list[str]) -> None:
        invalid = []
        for entry in entries:
            try:
                network = ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                invalid.append(entry)
                continue
            interval = (int(network.network_address), int(network.broadcast_address), list_id)
            self.intervals[network.version].append(interval)
        if invalid:
            self.errors.append(
                f"{warninglist.key}: {len(invalid)} invalid CIDR entries skipped "
                f"(first: {invalid[0]!r})"
            )

    def _add_regexes(self, list_id: int, warninglist: Warninglist, entries: list[str]) -> None:
        for entry in entries:
            try:
                self.regexes.append((list_id, compile_misp_regex(entry)))
            except (ValueError, re.error) as error:
                self.errors.append(f"{warninglist.key}: regex skipped: {error}")


def _put(table: dict[str, ListIds], key: str, single: ListIds) -> None:
    previous = table.get(key)
    if previous is None:
        table[key] = single
    elif previous[-1] != single[0]:
        table[key] = (*previous, single[0])


def _read_folder(folder: Path) -> Iterator[tuple[str, Document | str]]:
    """Yield (folder name, document) per `<name>/list.json`, or an error text in its place."""
    root = folder / "lists" if (folder / "lists").is_dir() else folder
    paths = sorted(root.glob("*/list.json"))
    if not paths:
        yield folder.name, f"{root}: no <name>/list.json warninglists found"
    for path in paths:
        try:
            document = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            yield path.parent.name, f"{path}: unreadable: {error}"
            continue
        if not isinstance(document, dict):
            yield path.parent.name, f"{path}: not a JSON object"
            continue
        yield path.parent.name, document


class WarninglistIndex:
    """Answers which selected warninglists contain a value, for tens of thousands of values.

    Matching follows MISP's list types with two deliberate tightenings: `substring` lists
    match on whole labels from the right (so `evilgoogle.com` is not `google.com`), and
    sub-domain matching stops at a public suffix. String lists match exactly, ignoring case;
    entries starting with a dot match that domain and its sub-domains.
    """

    def __init__(self, builder: _Builder) -> None:
        self.lists: tuple[Warninglist, ...] = tuple(builder.lists)
        self.errors: tuple[str, ...] = tuple(builder.errors)
        self._exact = builder.exact
        self._suffix = builder.suffix
        self._ranges = {version: _Ranges(found) for version, found in builder.intervals.items()}
        self._regexes = builder.regexes
        self._regexes_by_type: dict[str | None, tuple[tuple[int, re.Pattern[str]], ...]] = {}
        self._public_suffixes = frozenset(builder.public_suffixes)

    @classmethod
    def load(
        cls,
        folder: Path | None = None,
        *,
        include: Sequence[str] | None = None,
        exclude: Iterable[str] = CONTEXT_LISTS,
    ) -> WarninglistIndex:
        """Build the index from a folder of `lists/<name>/list.json` (default: the package's)."""
        documents = _read_folder(folder or package_lists_folder())
        return cls.from_documents(documents, include=include, exclude=exclude)

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[tuple[str, Document | str]],
        *,
        include: Sequence[str] | None = None,
        exclude: Iterable[str] = CONTEXT_LISTS,
    ) -> WarninglistIndex:
        """Build the index from (key, list document) pairs; a str in place of one is an error.

        `include` names lists by folder key or MISP name; None or "*" selects every list.
        """
        wanted = None if include is None or ALL_LISTS in include else set(include)
        unwanted = set(exclude)
        builder = _Builder()
        seen: set[str] = set()
        for key, document in documents:
            if isinstance(document, str):
                builder.errors.append(document)
                continue
            names = {key, str(document.get("name", ""))}
            seen |= names
            if names & _PUBLIC_SUFFIX_LISTS:
                builder.add_public_suffixes(document)
            if (wanted is None or names & wanted) and not names & unwanted:
                builder.add(key, document)
        builder.errors.extend(
            f"unknown warninglist {name!r}" for name in sorted((wanted or set()) - seen)
        )
        return cls(builder)

    def match(self, value: str, *, attribute_type: str | None = None) -> list[str]:
        """Return the names of the lists containing this single value (for this type if given)."""
        return self._names(self._candidates(value, attribute_type), attribute_type)

    def match_attribute(self, attribute_type: str, value: str) -> list[str]:
        """Return the names of the lists matching a MISP attribute, composites included."""
        found: set[int] = set()
        for part in relevant_parts(attribute_type, value):
            found |= self._candidates(part, attribute_type)
        return self._names(found, attribute_type)

    def _names(self, found: set[int], attribute_type: str | None) -> list[str]:
        chosen = (self.lists[list_id] for list_id in found)
        return sorted(item.name for item in chosen if item.applies_to(attribute_type))

    def _candidates(self, value: str, attribute_type: str | None) -> set[int]:
        text = value.strip()
        lowered = text.lower()
        if not text:
            return set()
        found = set(self._exact.get(lowered, ()))
        network = as_network(text)
        if network is not None:
            low, high = int(network.network_address), int(network.broadcast_address)
            found |= self._ranges[network.version].covering(low, high)
            found.update(self._suffix.get(lowered, ()))
        else:
            host = hostname_of(lowered)
            if host is not None:
                if host != lowered:
                    found.update(self._exact.get(host, ()))
                found |= self._domain_hits(host)
        for list_id, pattern in self._regexes_for(attribute_type):
            if pattern.search(text):
                found.add(list_id)
        return found

    def _regexes_for(self, attribute_type: str | None) -> tuple[tuple[int, re.Pattern[str]], ...]:
        """Return the regex entries consulted for this type, worked out once per type.

        Regex lists are written for named types (e-mail, phone): without a type, only the
        lists that name no type apply.
        """
        chosen = self._regexes_by_type.get(attribute_type)
        if chosen is None:
            chosen = tuple(
                (list_id, pattern)
                for list_id, pattern in self._regexes
                if (types := self.lists[list_id].attribute_types) is None
                or (attribute_type is not None and attribute_type in types)
            )
            self._regexes_by_type[attribute_type] = chosen
        return chosen

    def _domain_hits(self, host: str) -> set[int]:
        """Look the host and each parent domain up, stopping at the first public suffix."""
        found = set(self._suffix.get(host, ()))
        dot = host.find(".")
        while dot != -1:
            parent = host[dot + 1 :]
            if parent in self._public_suffixes:
                break
            found.update(self._suffix.get(parent, ()))
            dot = host.find(".", dot + 1)
        return found
