"""An immutable set of compiled rules and the index that keeps matching fast.

Events are grouped by *kind* — the values of the few fields the logsource mapping looks
at (`Channel`, `EventID`, `program`, …). For each kind seen, the rule set builds once a
plan: the rules whose logsource and event ids fit, split into rules that always run and
rules reached through one Aho-Corasick automaton per field, which finds in one pass
every literal some rule needs. Only rules whose literal occurs are then evaluated, and
a rule's matcher is compiled the first time it is needed (`compile_all` does it now), from
the code the rule cache kept for it when there is some (`code`, by `code_key`), else from
its source; `take_fresh_code` returns what was compiled from source, for the cache to keep.

A rule that raises never stops the stream: the error is counted per rule and kept.
"""

from __future__ import annotations

import hashlib
import ipaddress
import marshal
import re
import sys
import threading
import types
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import ahocorasick
import ahocorasick_rs

from puffin.detection.engine import runtime
from puffin.detection.engine.compiled import ENGINE_VERSION, CompiledRule
from puffin.detection.engine.logsources import Alternative, LogsourceMap

MAX_PLANS = 20_000
NAMESPACE: dict[str, Any] = {
    "_re": re,
    "_ipaddress": ipaddress,
    "_cidr": runtime.cidr,
    "_compare": runtime.compare,
    "_fieldref": runtime.fieldref,
    "_timestamp_part": runtime.timestamp_part,
    "__builtins__": {"any": any, "True": True, "False": False, "str": str, "tuple": tuple},
}


@dataclass(frozen=True)
class Match:
    """One rule that matched one event, with the fields the rule looks at."""

    rule: CompiledRule
    matched: dict[str, Any]

    @property
    def rule_id(self) -> str:
        return self.rule.id

    @property
    def title(self) -> str:
        return self.rule.title

    @property
    def level(self) -> str:
        return self.rule.level

    @property
    def tags(self) -> Sequence[str]:
        return self.rule.tags


@dataclass
class RuleErrors:
    """How often a rule raised, and the last error."""

    count: int = 0
    last: str = ""


# Code objects are only valid for the Python that made them (and marshal's format).
CODE_TAG = f"{sys.implementation.cache_tag}:{marshal.version}:{ENGINE_VERSION}"
CODE_CACHE = sys.implementation.cache_tag is not None  # None: this Python keeps no .pyc


def code_key(rule: CompiledRule) -> str:
    """Return the key of a rule's compiled matcher: its source, id and this Python."""
    digest = hashlib.sha256(CODE_TAG.encode())
    digest.update(rule.id.encode())
    digest.update(b"\0")
    digest.update(rule.source.encode())
    return digest.hexdigest()


@dataclass
class _Loaded:
    rule: CompiledRule
    alternatives: tuple[Alternative, ...]
    fields: tuple[str, ...]
    match: Any = None  # compiled on first use: most rules never meet an event they fit


@dataclass(frozen=True)
class _Plan:
    always: tuple[int, ...]
    automata: tuple[tuple[str | None, Any], ...]
    aliases: tuple[tuple[str, str], ...]
    text_rules: frozenset[int] = frozenset()  # rules reached through the shared _TextIndex


class _TextIndex:
    """The literals of every keyword (full-text) detection, found in one scan of the text.

    A keyword rule looks for its words anywhere in the event: in the text of all its values
    (`runtime.all_text`), lower-cased. On Windows logs, where SigmaHQ's Mimikatz keywords
    apply to every event, scanning that text was about two thirds of all matching with
    pyahocorasick; ahocorasick-rs, whose Rust automaton skips ahead to where a literal can
    start, scans such a text about three times as fast. (Field values are short, and
    pyahocorasick is quicker there.) Overlapping matches: every literal that occurs counts.
    """

    def __init__(self, literals: Mapping[str, Sequence[int]]) -> None:
        words = list(literals)
        self._rules = [tuple(literals[word]) for word in words]
        self._automaton = ahocorasick_rs.AhoCorasick(words)

    def rules_in(self, text: str) -> AbstractSet[int]:
        """Return the rules one of whose literals occurs in the (lower-cased) text."""
        found = self._automaton.find_matches_as_indexes(text, overlapping=True)
        if not found:
            return _NONE
        rules = self._rules
        return {index for word, _, _ in found for index in rules[word]}


_NONE: frozenset[int] = frozenset()


def _code(rule: CompiledRule) -> Any:
    return compile(rule.source, f"<rule {rule.id}>", "exec")


def _unmarshal(data: bytes | None) -> Any:
    """Return the code object kept in the cache, or None when it is absent or unreadable."""
    if data is None:
        return None
    try:
        code = marshal.loads(data)  # noqa: S302 - our own cache, beside the source it runs
    except (EOFError, ValueError, TypeError):  # a damaged cache: compile from source instead
        return None
    return code if isinstance(code, types.CodeType) else None


def _function(code: Any) -> Any:
    namespace = dict(NAMESPACE)
    exec(code, namespace)  # noqa: S102 - generated from rule data; every literal is repr()'d
    return namespace["match"]


@dataclass
class RuleSet:
    """Compiled rules with their index; build a new one to change rules (swap atomically)."""

    rules: Sequence[CompiledRule]
    logsources: LogsourceMap = field(default_factory=LogsourceMap.default)
    code: Mapping[str, bytes] = field(default_factory=dict, repr=False)  # by code_key
    keep_fresh_code: bool = False  # for `take_fresh_code`: a hunt gives it to the cache
    unmapped: dict[str, list[str]] = field(default_factory=dict, init=False)
    errors: dict[str, RuleErrors] = field(default_factory=dict, init=False)
    _loaded: list[_Loaded] = field(default_factory=list, init=False, repr=False)
    _plans: dict[tuple[Any, ...], _Plan] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _fresh: dict[str, bytes] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        groups: dict[tuple[Alternative, ...], list[int]] = {}
        for index, rule in enumerate(self.rules):
            alternatives, unmapped = self.logsources.alternatives(
                rule.product or None, rule.category or None, rule.service or None
            )
            if unmapped:
                self.unmapped[rule.id] = unmapped
            self._loaded.append(_Loaded(rule, tuple(alternatives), rule.fields))
            groups.setdefault(self._loaded[-1].alternatives, []).append(index)
        # Rules by logsource: a plan tests each logsource once, not once per rule.
        self._by_logsource = tuple((alts, tuple(indexes)) for alts, indexes in groups.items())
        self._kind_fields = self.logsources.kind_fields
        # Keyword literals, all in one index; each plan keeps the rules it may run.
        keywords: dict[str, list[int]] = {}
        for index, rule in enumerate(self.rules):
            for name, literal in rule.literals or ():
                if name is None:
                    keywords.setdefault(literal, []).append(index)
        self._text = _TextIndex(keywords) if keywords else None

    def __len__(self) -> int:
        return len(self._loaded)

    def compile_all(self) -> None:
        """Compile every rule's matcher now (they are otherwise compiled on first use)."""
        for loaded in self._loaded:
            if loaded.match is None:
                self._matcher(loaded)

    def take_fresh_code(self) -> dict[str, bytes]:
        """Return the matchers compiled from source since the last call, and forget them.

        Marshalled, by `code_key`, and only with `keep_fresh_code`: for the rule cache.
        """
        with self._lock:
            fresh, self._fresh = self._fresh, {}
        return fresh

    def _matcher(self, loaded: _Loaded) -> Any:
        """Compile a rule's matcher (a race compiles twice, harmlessly)."""
        key = code_key(loaded.rule) if CODE_CACHE else ""
        code = _unmarshal(self.code.get(key)) if key else None
        fresh = code is None
        if fresh:
            code = _code(loaded.rule)
        loaded.match = _function(code)
        if key and fresh and self.keep_fresh_code:
            with self._lock:
                self._fresh[key] = marshal.dumps(code)
        return loaded.match

    def evaluate(self, event: Mapping[str, Any]) -> list[Match]:
        """Return the rules that match the event."""
        kind = tuple(map(event.get, self._kind_fields))
        try:
            plan = self._plans.get(kind)
        except TypeError:  # a list or mapping among the kind fields
            kind = tuple(_hashable(value) for value in kind)
            plan = self._plans.get(kind)
        if plan is None:
            plan = self._plan(kind, event.get("EventID"))
        if plan.aliases:
            event = _with_aliases(event, plan.aliases)
        lower = runtime.LowerView(event)
        candidates = set(plan.always)
        if plan.text_rules:
            assert self._text is not None
            found = self._text.rules_in(lower[None])
            if found:
                candidates.update(plan.text_rules.intersection(found))
        get = event.get
        for name, automaton in plan.automata:
            raw = get(name) if name is not None else None
            if raw.__class__ is str:
                value = raw.lower()
                lower[name] = value
                for _, rule_indexes in automaton.iter(value):
                    candidates.update(rule_indexes)
                continue
            value = lower[name]
            if value is None:
                continue
            for text in value if value.__class__ is tuple else (value,):
                for _, rule_indexes in automaton.iter(text):
                    candidates.update(rule_indexes)
        if not candidates:
            return []
        raw = runtime.RawView(event)
        matches = []
        for index in sorted(candidates):
            loaded = self._loaded[index]
            try:
                if (loaded.match or self._matcher(loaded))(event, lower, raw):
                    matches.append(Match(loaded.rule, _matched(event, loaded.fields)))
            except Exception as error:
                self._note_error(loaded.rule.id, error)
        return matches

    def _note_error(self, rule_id: str, error: Exception) -> None:
        with self._lock:
            entry = self.errors.setdefault(rule_id, RuleErrors())
            entry.count += 1
            entry.last = f"{type(error).__name__}: {error}"

    def _plan(self, kind: tuple[Any, ...], event_id: Any) -> _Plan:
        values = dict(zip(self._kind_fields, kind, strict=True))
        event_id_text = None if event_id is None else str(event_id).lower()
        always: list[int] = []
        by_field: dict[str | None, dict[str, list[int]]] = {}
        aliases: set[tuple[str, str]] = set()
        for alternatives, indexes in self._by_logsource:
            fitting = [alt for alt in alternatives if alt.matches(values)]
            if not fitting:
                continue
            for index in indexes:
                rule = self._loaded[index].rule
                if rule.event_ids is not None and event_id_text not in rule.event_ids:
                    continue
                for alternative in fitting:
                    aliases.update(alternative.aliases)
                if rule.literals is None:
                    always.append(index)
                    continue
                for name, literal in rule.literals:
                    by_field.setdefault(name, {}).setdefault(literal, []).append(index)
        always.sort()
        text_rules: frozenset[int] = frozenset()
        if self._text is not None and None in by_field:
            text_rules = frozenset(i for indexes in by_field.pop(None).values() for i in indexes)
        plan = _Plan(tuple(always), tuple(_automata(by_field)), tuple(sorted(aliases)), text_rules)
        with self._lock:
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[kind] = plan
        return plan


def _automata(by_field: Mapping[str | None, Mapping[str, list[int]]]) -> Iterable[Any]:
    for name, literals in by_field.items():
        automaton = ahocorasick.Automaton()
        for literal, indexes in literals.items():
            automaton.add_word(literal, tuple(indexes))
        automaton.make_automaton()
        yield name, automaton


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, dict):
        return None
    return value


def _with_aliases(event: Mapping[str, Any], aliases: Iterable[tuple[str, str]]) -> dict[str, Any]:
    copy = dict(event)
    for sigma_name, own_name in aliases:
        if sigma_name not in copy and own_name in copy:
            copy[sigma_name] = copy[own_name]
    return copy


def _matched(event: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: event[name] for name in names if name in event}
