"""Turn an event's XML (what `EvtRender` gives) into the dict the `evtx` package gives for
the same record of an EVTX file: `{"Event": {"#attributes": …, "System": …, "EventData": …}}`.

The shape follows the evtx crate's JSON rules:

- an element with neither attributes, children nor text is `None`; one with only text is
  that text; otherwise an object with `#attributes` (attributes with an empty value are
  left out), `#text` and one key per child element, repeated names numbered `Name`,
  `Name_1`, `Name_2`;
- inside `EventData` and `UserData`, `Data` elements with a `Name` attribute become
  `Name: value` (an empty one is `""`); unnamed ones become one `"Data": {"#text": value}`
  (a list when there are several).

What XML cannot carry is the binary type of each value, so:

- the `System` values that the event schema defines as integers (`EventID`, `Version`,
  `Level`, `Task`, `Opcode`, `EventRecordID`, and the `Qualifiers`, `ProcessID`,
  `ThreadID`, `ProcessorID`, `SessionID`, `KernelTime`, `UserTime`, `ProcessorTime`
  attributes) are made integers, as evtx makes them;
- every `EventData`/`UserData` value stays text, where evtx writes the numbers and booleans
  of the provider's template as JSON numbers and booleans ("4460" here, 4460 there).
  Detection compares values as text, so both match the same rules.

Whitespace-only text outside `Data` elements is layout, not data (the evtx package indents
its XML; `EvtRender` does not). Carriage returns in values are kept (XML parsing would turn
CR LF into LF), and characters XML 1.0 cannot hold become U+FFFD.

Parsing is stdlib expat with no namespace processing (names and `xmlns` stay as written);
a document with a DTD is refused, so no entity can be declared, let alone expanded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

MAX_DEPTH = 64
MAX_XML_CHARS = 8 * 1024 * 1024
DATA_CONTAINERS = frozenset({"EventData", "UserData"})
SYSTEM_NUMBERS = frozenset({"EventID", "Version", "Level", "Task", "Opcode", "EventRecordID"})
SYSTEM_NUMBER_ATTRIBUTES = frozenset(
    {
        "Qualifiers",
        "ProcessID",
        "ThreadID",
        "ProcessorID",
        "SessionID",
        "KernelTime",
        "UserTime",
        "ProcessorTime",
    }
)
NOT_XML_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class RenderError(ValueError):
    """The text is not an event this module can turn into the EVTX shape."""


@dataclass
class Element:
    """One parsed XML element: its name, attributes in order, and children (text or elements)."""

    name: str
    attributes: list[tuple[str, str]] = field(default_factory=list)
    children: list[Element | str] = field(default_factory=list)

    def elements(self) -> list[Element]:
        """Return the child elements."""
        return [child for child in self.children if isinstance(child, Element)]

    def text(self) -> str:
        """Return the element's own text (not its children's)."""
        return "".join(child for child in self.children if isinstance(child, str))

    def attribute(self, name: str) -> str:
        """Return an attribute's value, or ""."""
        return next((value for key, value in self.attributes if key == name), "")


def _refuse_declarations(*_: Any) -> None:
    raise RenderError("a document type declaration is not allowed in an event")


def parse(xml: str) -> Element:
    """Parse XML safely into Elements; raise RenderError when it is not well-formed."""
    if len(xml) > MAX_XML_CHARS:
        raise RenderError(f"the event is longer than {MAX_XML_CHARS} characters")
    cleaned = NOT_XML_CHARACTERS.sub("\ufffd", xml)
    try:
        return _parse(cleaned.replace("\r", "&#13;"))
    except RenderError:
        if "\r" not in cleaned:
            raise
    return _parse(cleaned)  # a carriage return in the markup itself: parse as written


def _parse(xml: str) -> Element:
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.ordered_attributes = True
    parser.StartDoctypeDeclHandler = _refuse_declarations
    parser.EntityDeclHandler = _refuse_declarations
    stack: list[Element] = []
    roots: list[Element] = []

    def start(name: str, attributes: list[str]) -> None:
        if len(stack) >= MAX_DEPTH:
            raise RenderError(f"the event nests deeper than {MAX_DEPTH} elements")
        pairs = list(zip(attributes[::2], attributes[1::2], strict=True))
        element = Element(name, pairs)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].children.append(data)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(xml, True)
    except expat.ExpatError as error:
        raise RenderError(f"the event is not well-formed XML: {error}") from error
    return roots[0]


def render_event_xml(xml: str) -> dict[str, Any]:
    """Return the EVTX-shaped dict for one event's XML; raise RenderError if it is no event."""
    root = parse(xml)
    if root.name != "Event":
        raise RenderError(f"the root element is {root.name!r}, not 'Event'")
    rendered = {root.name: _value(root, container=False, in_system=False)}
    event = rendered["Event"]
    if not isinstance(event, dict) or not isinstance(event.get("System"), dict):
        raise RenderError("the event has no System element")
    return rendered


def _number(text: str) -> int | str:
    return int(text) if text.isascii() and text.isdigit() else text


def _attributes(element: Element, in_system: bool) -> dict[str, Any]:
    return {
        name: _number(value) if in_system and name in SYSTEM_NUMBER_ATTRIBUTES else value
        for name, value in element.attributes
        if value != ""
    }


def _value(element: Element, *, container: bool, in_system: bool) -> Any:
    attributes = _attributes(element, in_system)
    children = element.elements()
    text = element.text()
    if not text.strip():
        text = ""
    if not children and not text and not attributes:
        return None
    typed = _number(text) if in_system and element.name in SYSTEM_NUMBERS else text
    if not children and not attributes:
        return typed
    body: dict[str, Any] = {}
    if attributes:
        body["#attributes"] = attributes
    if text:
        body["#text"] = typed if not children else text.strip()
    _children(element, children, body, container=container, in_system=in_system)
    return body


def _children(
    parent: Element,
    children: list[Element],
    body: dict[str, Any],
    *,
    container: bool,
    in_system: bool,
) -> None:
    data = [child for child in children if child.name == "Data"] if container else []
    named = any(child.attribute("Name") for child in data)
    seen: dict[str, int] = {}
    for child in children:
        if container and child.name == "Data":
            if named and child.attribute("Name"):
                body[child.attribute("Name")] = _data_value(child)
            elif not named and "Data" not in body:
                values = [_data_value(item) for item in data]
                body["Data"] = {"#text": values[0] if len(values) == 1 else values}
            continue
        count = seen.get(child.name, 0)
        seen[child.name] = count + 1
        key = f"{child.name}_{count}" if count else child.name
        body[key] = _value(
            child,
            container=child.name in DATA_CONTAINERS,
            in_system=in_system or (parent.name == "Event" and child.name == "System"),
        )


def _data_value(element: Element) -> Any:
    """Return a Data item's value: its text as written, or an object if it holds elements."""
    if not element.elements():
        return element.text()
    return _value(element, container=False, in_system=False)


def summary(event: dict[str, Any], *, max_value: int = 1024, max_chars: int = 8192) -> str:
    """Return one readable line for an EVTX-shaped event: where, what, and its data."""
    system = event.get("System") or {}
    provider = system.get("Provider") or {}
    name = provider.get("#attributes", {}).get("Name", "") if isinstance(provider, dict) else ""
    event_id = system.get("EventID")
    if isinstance(event_id, dict):
        event_id = event_id.get("#text", "")
    head = f"{system.get('Channel', '')} {event_id} {name} on {system.get('Computer', '')}"
    pairs: list[str] = []
    for section in ("EventData", "UserData"):
        _pairs(event.get(section), pairs, max_value)
    line = f"{head}: {' '.join(pairs)}" if pairs else head
    return line[:max_chars]


def _pairs(section: Any, pairs: list[str], max_value: int) -> None:
    if not isinstance(section, dict):
        return
    for key, value in section.items():
        if key == "#attributes":
            continue
        if isinstance(value, dict) and "#text" not in value:
            _pairs(value, pairs, max_value)
        elif value not in (None, ""):
            text = value.get("#text") if isinstance(value, dict) else value
            pairs.append(
                f"{key}={str(text).replace(chr(13), '').replace(chr(10), ' ')[:max_value]}"
            )
