"""Compile a parsed Sigma rule (pySigma's model) into a Python matcher and its index keys.

Each rule becomes the source of one small Python function over an event and its two
views (`runtime.LowerView`, `runtime.RawView`). Every literal in that source is written
with `repr`, so rule content can never become code. Beside the function the compiler
records what the index needs: the literals one of which must occur in the event for the
rule to match (for the shared Aho-Corasick pre-filter) and the event ids the rule can
match at all.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from re import _parser as _re_parser  # type: ignore[attr-defined]  # the stdlib's own parser
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
    SigmaCondition,
)
from sigma.modifiers import SigmaWideModifier, modifier_mapping
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from puffin.detection.engine.compiled import (
    ENGINE_VERSION,
    LEVELS,
    CompiledRule,
    UnsupportedRule,
)
from puffin.detection.engine.options import dedupe_of

# Plain data, importable without pySigma (see `compiled`); named here too, where the
# compiler's callers have always found them.
__all__ = ["ENGINE_VERSION", "LEVELS", "CompiledRule", "UnsupportedRule", "compile_rule"]
MIN_LITERAL = 3

# The Sigma specification spells `wide` also `utf16le`; pySigma 2.0 knows only `wide`.
# Adding the spelling to pySigma's table (once, before any rule is parsed: every parsing
# path imports this module first) makes such rules load instead of being refused.
MODIFIER_ALIASES = {"utf16le": SigmaWideModifier}
for _name, _modifier in MODIFIER_ALIASES.items():
    modifier_mapping.setdefault(_name, _modifier)


# --- the intermediate tree -----------------------------------------------------------


@dataclass(frozen=True)
class Leaf:
    """One test on one field: its Python expression and what the index may use."""

    code: str
    field: str | None
    literals: tuple[str, ...] | None = None
    event_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class Node:
    """`and`, `or` or `not` over children, or a constant (`true`/`false`)."""

    op: str
    children: tuple[Node | Leaf, ...] = ()


TRUE = Node("true")
FALSE = Node("false")


@dataclass
class _Context:
    """What compiling one rule collects: hoisted constants, fields, warnings."""

    placeholders: Mapping[str, Sequence[str]]
    constants: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)

    def constant(self, source: str) -> str:
        name = f"_k{len(self.constants)}"
        self.constants.append(f"{name} = {source}")
        return name


# --- strings -------------------------------------------------------------------------


@dataclass(frozen=True)
class _StringTest:
    op: str  # equals, startswith, endswith, contains, any, pattern
    text: str  # the literal (lower-cased unless cased) or the regular expression
    literal: str  # the longest fragment that must occur


def _string_test(value: SigmaString, cased: bool, keyword: bool) -> _StringTest:
    parts = list(value.s)
    fold = (lambda text: text) if cased else str.lower
    if keyword:
        while parts and parts[0] is SpecialChars.WILDCARD_MULTI:
            parts.pop(0)
        while parts and parts[-1] is SpecialChars.WILDCARD_MULTI:
            parts.pop()
        if all(isinstance(p, str) for p in parts):
            text = fold("".join(str(p) for p in parts))
            return _StringTest("contains", text, text)
        return _StringTest("search", _regex(parts, fold, line=True), _longest(parts, fold))
    if not parts:
        return _StringTest("equals", "", "")
    if all(p is SpecialChars.WILDCARD_MULTI for p in parts):
        return _StringTest("any", "", "")
    inner = parts[:]
    leading = inner[0] is SpecialChars.WILDCARD_MULTI
    trailing = inner[-1] is SpecialChars.WILDCARD_MULTI
    inner = inner[1 if leading else 0 : len(inner) - 1 if trailing else len(inner)]
    if all(isinstance(p, str) for p in inner):
        text = fold("".join(str(p) for p in inner))
        op = {
            (False, False): "equals",
            (True, False): "endswith",
            (False, True): "startswith",
            (True, True): "contains",
        }[(leading, trailing)]
        return _StringTest(op, text, text)
    return _StringTest("pattern", _regex(parts, fold, line=False), _longest(parts, fold))


def _regex(parts: Sequence[Any], fold: Callable[[str], str], *, line: bool) -> str:
    many, one = ("[^\n]*", "[^\n]") if line else (".*", ".")
    out = []
    for part in parts:
        if part is SpecialChars.WILDCARD_MULTI:
            out.append(many)
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(one)
        else:
            out.append(re.escape(fold(str(part))))
    return "".join(out)


def _longest(parts: Sequence[Any], fold: Callable[[str], str]) -> str:
    texts = [fold(p) for p in parts if isinstance(p, str)]
    return max(texts, key=len, default="")


def _string_expr(test: _StringTest, var: str, ctx: _Context) -> str:
    if test.op == "equals":
        return f"{var} == {test.text!r}"
    if test.op == "startswith":
        return f"{var}.startswith({test.text!r})"
    if test.op == "endswith":
        return f"{var}.endswith({test.text!r})"
    if test.op == "contains":
        return f"{test.text!r} in {var}"
    if test.op == "any":
        return "True"
    pattern = ctx.constant(f"_re.compile({test.text!r}, _re.S)")
    method = "search" if test.op == "search" else "fullmatch"
    return f"{pattern}.{method}({var}) is not None"


def _group_expr(tests: Sequence[_StringTest], var: str, *, ctx: _Context) -> str:
    """Return one expression that is true when any of the tests holds, grouped by kind."""
    by_op: dict[str, list[str]] = {}
    for test in tests:
        by_op.setdefault(test.op, []).append(test.text)
    parts: list[str] = []
    for op, texts in by_op.items():
        unique = sorted(set(texts))
        if op == "any":
            return "True"
        if op == "equals":
            parts.append(
                f"{var} == {unique[0]!r}" if len(unique) == 1 else f"{var} in {set(unique)!r}"
            )
        elif op in ("startswith", "endswith"):
            argument = repr(unique[0]) if len(unique) == 1 else repr(tuple(unique))
            parts.append(f"{var}.{op}({argument})")
        elif op == "contains":
            parts.extend(f"{text!r} in {var}" for text in unique)
        else:
            joined = "|".join(f"(?:{text})" for text in unique)
            parts.append(_string_expr(_StringTest(op, joined, ""), var, ctx))
    return " or ".join(parts) if len(parts) > 1 else parts[0]


def _on_field(view: str, name: str | None, expr_of: Callable[[str], str]) -> str:
    """Apply a text expression to a field's value, or to any element of a list value."""
    return (
        f"(((v := {view}[{name!r}]).__class__ is str and ({expr_of('v')})) or "
        f"(v.__class__ is tuple and any(({expr_of('x')}) for x in v)))"
    )


# --- values --------------------------------------------------------------------------


def _resolve_placeholders(value: SigmaString, ctx: _Context) -> list[SigmaString]:
    if not value.contains_placeholder():
        return [value]
    missing: list[str] = []

    def callback(placeholder: Placeholder) -> Iterator[SigmaString]:
        found = ctx.placeholders.get(placeholder.name)
        if not found:
            missing.append(placeholder.name)
            return iter(())
        return iter([SigmaString(str(v)) for v in found])

    resolved = list(value.replace_placeholders(callback))
    for name in missing:
        ctx.warnings.append(f"placeholder %{name}% has no values in the configuration")
    return resolved


def _flatten(values: Sequence[SigmaType]) -> list[SigmaType]:
    flat: list[SigmaType] = []
    for value in values:
        if isinstance(value, SigmaExpansion):
            flat.extend(_flatten(value.values))
        else:
            flat.append(value)
    return flat


def _value_leaves(
    name: str | None, values: Sequence[SigmaType], ctx: _Context
) -> list[Node | Leaf]:
    """Return tests (OR-linked) for values of one field; strings are grouped together."""
    groups: dict[bool, list[_StringTest]] = {}
    others: list[Node | Leaf] = []
    for value in _flatten(values):
        if isinstance(value, SigmaString):
            cased = isinstance(value, SigmaCasedString)
            for resolved in _resolve_placeholders(value, ctx):
                groups.setdefault(cased, []).append(_string_test(resolved, cased, name is None))
        elif isinstance(value, (SigmaNumber, SigmaBool)) and not isinstance(
            value, SigmaTimestampPart
        ):
            text = _plain(value)
            op = "contains" if name is None else "equals"
            groups.setdefault(False, []).append(_StringTest(op, text, text))
        else:
            others.append(_special_leaf(name, value, ctx))
    leaves: list[Node | Leaf] = []
    for cased, tests in groups.items():
        view = "R" if cased else "L"
        code = _on_field(view, name, partial(_group_expr, tests, ctx=ctx))
        literals = _literals(tests)
        event_ids = None
        if name == "EventID" and all(t.op == "equals" for t in tests):
            event_ids = frozenset(t.text for t in tests)
        leaves.append(Leaf(code, name, literals, event_ids))
    return leaves + others


def _plain(value: SigmaNumber | SigmaBool) -> str:
    if isinstance(value, SigmaBool):
        return "true" if value.boolean else "false"
    return str(value.number).lower()


def _literals(tests: Sequence[_StringTest]) -> tuple[str, ...] | None:
    # A short ASCII literal would reach the rule for most events; a short non-ASCII one (an
    # emoji, an arrow) is rare enough to index, sparing rules that list hundreds of them.
    if any(len(test.literal) < MIN_LITERAL and test.literal.isascii() for test in tests):
        return None
    return tuple(sorted({test.literal.lower() for test in tests}))


def _special_leaf(name: str | None, value: SigmaType, ctx: _Context) -> Node | Leaf:
    if isinstance(value, SigmaNull):
        return Leaf(f"(L[{name!r}] in (None, ''))", name)
    if isinstance(value, SigmaExists):
        return Leaf(f"(L[{name!r}] is {'not ' if value.exists else ''}None)", name)
    if isinstance(value, SigmaRegularExpression):
        return _regex_leaf(name, value, ctx)
    if isinstance(value, SigmaCIDRExpression):
        network = ctx.constant(f"(_ipaddress.ip_network({str(value.network)!r}),)")
        return Leaf(f"_cidr(R[{name!r}], {network})", name)
    if isinstance(value, SigmaCompareExpression):
        operator = value.op.name.lower()
        return Leaf(f"_compare(R[{name!r}], {operator!r}, {float(value.number.number)!r})", name)
    if isinstance(value, SigmaFieldReference):
        mode = "startswith" if value.starts_with else "endswith" if value.ends_with else "equals"
        ctx.fields.add(value.field)
        return Leaf(f"_fieldref(L, {name!r}, {value.field!r}, {mode!r})", name)
    if isinstance(value, SigmaTimestampPart):
        part = value.timestamp_part.name.lower()
        return Leaf(f"_timestamp_part(R[{name!r}], {part!r}, {int(value.number)!r})", name)
    raise UnsupportedRule(f"value type {type(value).__name__} is not supported")


PYTHON_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "_re.I",
    SigmaRegularExpressionFlag.MULTILINE: "_re.M",
    SigmaRegularExpressionFlag.DOTALL: "_re.S",
}
FLAG_VALUES = {
    SigmaRegularExpressionFlag.IGNORECASE: re.IGNORECASE,
    SigmaRegularExpressionFlag.MULTILINE: re.MULTILINE,
    SigmaRegularExpressionFlag.DOTALL: re.DOTALL,
}


def _regex_leaf(name: str | None, value: SigmaRegularExpression, ctx: _Context) -> Leaf:
    text = str(value.regexp)
    flags = " | ".join(PYTHON_FLAGS[flag] for flag in sorted(value.flags, key=str)) or "0"
    try:
        re.compile(text)
    except re.error as error:
        message = f"regular expression {text!r} is not valid in Python: {error}"
        raise UnsupportedRule(message) from error
    pattern = ctx.constant(f"_re.compile({text!r}, {flags})")
    code = _on_field("R", name, lambda var: f"{pattern}.search({var}) is not None")
    literal = _regex_literal(text, sum(FLAG_VALUES[flag] for flag in value.flags))
    return Leaf(code, name, (literal.lower(),) if literal else None)


def _regex_literal(text: str, flags: int) -> str | None:
    """Return the longest run of plain characters that every match of the expression holds.

    Only characters at the top level of a case-sensitive expression count (not inside a
    group, a repetition or an alternative): a match holds them exactly, so the lower-cased
    field value the index scans holds them lower-cased. None when the run is too short.
    """
    if flags & re.IGNORECASE:
        return None
    try:
        parsed = _re_parser.parse(text, flags)
    except (re.error, RecursionError, OverflowError):
        return None
    if parsed.state.flags & re.IGNORECASE:  # an inline (?i) at the start
        return None
    runs, run = [], []
    for opcode, argument in parsed:
        if opcode is _re_parser.LITERAL:
            run.append(chr(argument))
        else:
            runs.append("".join(run))
            run = []
    runs.append("".join(run))
    longest = max(runs, key=len)
    return longest if len(longest) >= MIN_LITERAL else None


# --- detections and conditions -------------------------------------------------------


def _item(item: SigmaDetectionItem, ctx: _Context) -> Node | Leaf:
    if item.field is not None:
        ctx.fields.add(item.field)
    values = item.value
    if not values:
        return FALSE
    if item.value_linking is ConditionAND:
        children: list[Node | Leaf] = []
        for value in values:
            children.append(_or(_value_leaves(item.field, [value], ctx)))
        node: Node | Leaf = _and(children)
    else:
        node = _or(_value_leaves(item.field, values, ctx))
    return Node("not", (node,)) if item.negated else node


def _detection(detection: SigmaDetection, ctx: _Context) -> Node | Leaf:
    children = [
        _detection(child, ctx) if isinstance(child, SigmaDetection) else _item(child, ctx)
        for child in detection.detection_items
    ]
    return _and(children) if detection.item_linking is ConditionAND else _or(children)


def _and(children: Sequence[Node | Leaf]) -> Node | Leaf:
    kept = [c for c in children if c is not TRUE]
    if any(c is FALSE for c in kept):
        return FALSE
    if not kept:
        return TRUE
    return kept[0] if len(kept) == 1 else Node("and", tuple(kept))


def _or(children: Sequence[Node | Leaf]) -> Node | Leaf:
    kept = [c for c in children if c is not FALSE]
    if any(c is TRUE for c in kept):
        return TRUE
    if not kept:
        return FALSE
    return kept[0] if len(kept) == 1 else Node("or", tuple(kept))


def _condition(tree: Any, rule: SigmaRule, named: Mapping[str, Node | Leaf]) -> Node | Leaf:
    if isinstance(tree, ConditionIdentifier):
        name = tree.args[0]
        if name not in named:
            raise UnsupportedRule(f"the condition names {name!r}, which is not a detection")
        return named[name]
    if isinstance(tree, ConditionSelector):
        ids = tree.resolve_referenced_detections(rule.detection)
        if not ids:
            raise UnsupportedRule(f"'{tree.args[0]} of {tree.pattern}' matches no detection")
        children = [named[i.args[0]] for i in ids]
        return _and(children) if tree.cond_class is ConditionAND else _or(children)
    if isinstance(tree, ConditionNOT):
        child = _condition(tree.args[0], rule, named)
        return FALSE if child is TRUE else TRUE if child is FALSE else Node("not", (child,))
    if isinstance(tree, ConditionAND):
        return _and([_condition(arg, rule, named) for arg in tree.args])
    if isinstance(tree, ConditionOR):
        return _or([_condition(arg, rule, named) for arg in tree.args])
    raise UnsupportedRule(f"condition element {type(tree).__name__} is not supported")


# --- code and index keys -------------------------------------------------------------


def _code(node: Node | Leaf) -> str:
    if isinstance(node, Leaf):
        return node.code
    if node.op == "true":
        return "True"
    if node.op == "false":
        return "False"
    if node.op == "not":
        return f"(not {_code(node.children[0])})"
    joiner = " and " if node.op == "and" else " or "
    return "(" + joiner.join(_code(child) for child in node.children) + ")"


Literals = tuple[tuple[str | None, str], ...]


def _required_literals(node: Node | Leaf) -> Literals | None:
    """Return (field, literal) pairs one of which must occur when the node holds."""
    if isinstance(node, Leaf):
        if node.literals is None:
            return None
        return tuple((node.field, literal) for literal in node.literals)
    if node.op == "false":
        return ()
    if node.op in ("true", "not"):
        return None
    found = [_required_literals(child) for child in node.children]
    if node.op == "or":
        if any(f is None for f in found):
            return None
        return tuple(sorted({pair for f in found if f for pair in f}, key=str))
    candidates = [f for f in found if f is not None]
    if not candidates:
        return None
    return max(candidates, key=_selectivity)


def _selectivity(literals: Literals) -> tuple[int, int]:
    shortest = min((len(literal) for _, literal in literals), default=1000)
    return (min(shortest, 12), -len(literals))


def _required_event_ids(node: Node | Leaf) -> frozenset[str] | None:
    if isinstance(node, Leaf):
        return node.event_ids
    if node.op == "false":
        return frozenset()
    if node.op in ("true", "not"):
        return None
    found = [_required_event_ids(child) for child in node.children]
    if node.op == "or":
        if any(f is None for f in found):
            return None
        return frozenset().union(*[f for f in found if f is not None])
    known = [f for f in found if f is not None]
    if not known:
        return None
    result = known[0]
    for other in known[1:]:
        result &= other
    return result


def compile_rule(
    rule: SigmaRule, *, placeholders: Mapping[str, Sequence[str]] | None = None
) -> CompiledRule:
    """Compile one parsed Sigma rule; raise UnsupportedRule with the reason when it cannot."""
    if rule.errors:
        raise UnsupportedRule(str(rule.errors[0]))
    try:
        dedupe = dedupe_of(rule.custom_attributes or {})
    except ValueError as error:
        raise UnsupportedRule(str(error)) from error
    ctx = _Context(placeholders or {})
    named = {name: _detection(d, ctx) for name, d in rule.detection.detections.items()}
    trees = []
    for text in rule.detection.condition:
        parsed = SigmaCondition(text, rule.detection).parse(postprocess=False)
        trees.append(_condition(parsed, rule, named))
    root = _or(trees)
    source = _function_source(root, ctx)
    literals = _required_literals(root)
    event_ids = _required_event_ids(root)
    logsource = rule.logsource
    return CompiledRule(
        id=str(rule.id) if rule.id else _fallback_id(rule),
        title=rule.title or "",
        level=rule.level.name.lower() if rule.level else "medium",
        status=rule.status.name.lower() if rule.status else "",
        tags=tuple(str(tag) for tag in rule.tags),
        name=rule.name or "",
        product=logsource.product or "",
        category=logsource.category or "",
        service=logsource.service or "",
        source=source,
        fields=tuple(sorted(ctx.fields)),
        literals=literals,
        event_ids=tuple(sorted(event_ids)) if event_ids is not None else None,
        warnings=tuple(ctx.warnings),
        description=rule.description or "",
        falsepositives=tuple(str(f) for f in rule.falsepositives),
        dedupe_fields=dedupe.fields if dedupe else (),
        dedupe_window=dedupe.window_seconds if dedupe else None,
    )


def _fallback_id(rule: SigmaRule) -> str:
    import hashlib

    return "sha1-" + hashlib.sha1(rule.title.encode(), usedforsecurity=False).hexdigest()[:16]


def _function_source(root: Node | Leaf, ctx: _Context) -> str:
    lines = [*ctx.constants, "def match(e, L, R):", f"    return {_code(root)}"]
    return "\n".join(lines) + "\n"
