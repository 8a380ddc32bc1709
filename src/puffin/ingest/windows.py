"""Normalise Windows events (the `{"Event": {"System": …, "EventData": …}}` shape that
EVTX files and the agent's Event Log subscription give) into Puffin's flat event.

The flat event carries the field names Sigma rules use: `EventID`, `Channel`,
`Provider_Name`, `Computer`, `EventRecordID`, `TimeCreated`, and every `EventData` (or
`UserData`) item under its own name, e.g. `Image`, `CommandLine`, `TargetObject`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ATTRIBUTES = "#attributes"
TEXT = "#text"
# Types that are never mappings: tested by identity first, since checking a value against
# the Mapping ABC costs several times more and a record holds dozens of values.
_NOT_MAPPINGS = frozenset({str, int, float, bool, type(None), list})
_EMPTY: Mapping[str, Any] = {}


def _is_mapping(value: Any) -> bool:
    kind = value.__class__
    if kind is dict:
        return True
    return kind not in _NOT_MAPPINGS and isinstance(value, Mapping)


def _text(value: Any) -> Any:
    """Return the text of an element that may carry attributes (`{"#text": …}`)."""
    if _is_mapping(value):
        return value.get(TEXT, value.get("Value", ""))
    return value


def _attributes(value: Any) -> Mapping[str, Any]:
    if _is_mapping(value):
        attributes = value.get(ATTRIBUTES)
        if _is_mapping(attributes):
            return attributes  # type: ignore[no-any-return]
    return _EMPTY


def _system_fields(system: Mapping[str, Any]) -> dict[str, Any]:
    get = system.get
    flat: dict[str, Any] = {
        "EventID": _event_id(get("EventID")),
        "Channel": _text(get("Channel")),
        "Computer": _text(get("Computer")),
        "Provider_Name": _attributes(get("Provider")).get("Name", ""),
        "EventRecordID": _text(get("EventRecordID")),
        "TimeCreated": _attributes(get("TimeCreated")).get("SystemTime", ""),
    }
    for name in ("Level", "Task", "Opcode", "Keywords", "Version"):
        if name in system:
            flat[name] = _text(system[name])
    execution = _attributes(get("Execution"))
    if execution:
        flat["ExecutionProcessID"] = execution.get("ProcessID")
        flat["ExecutionThreadID"] = execution.get("ThreadID")
    security = _attributes(get("Security"))
    if security.get("UserID"):
        flat["SecurityUserID"] = security["UserID"]
    return {k: v for k, v in flat.items() if v is not None and v != ""}


def _event_id(value: Any) -> Any:
    value = _text(value)
    if value.__class__ is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _data_fields(section: Any, flat: dict[str, Any]) -> None:
    """Copy EventData/UserData items into the flat event (nested records are flattened)."""
    if _is_mapping(section):
        for name, value in section.items():
            if name == ATTRIBUTES:
                continue
            if value.__class__ is not str and _is_mapping(value):  # most values are text
                if TEXT not in value:
                    _data_fields(value, flat)
                    continue
                value = value.get(TEXT, value.get("Value", ""))
            if name not in flat:
                flat[name] = value
            if " " in name:
                # Defender and a few other providers name items "Threat Name";
                # Sigma rules write the name without its spaces.
                flat.setdefault(name.replace(" ", ""), flat[name])
    elif isinstance(section, list):
        for index, value in enumerate(section):
            flat.setdefault(f"Data{index}", _text(value))
    elif section is not None and section != "":
        flat.setdefault("Data", section)


def flatten_evtx_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the flat event for one `{"Event": …}` record."""
    event = record.get("Event", record)
    if not _is_mapping(event):
        raise ValueError("a Windows event must be an object with an Event element")
    system = event.get("System")
    if not _is_mapping(system):
        raise ValueError("a Windows event must have a System element")
    flat = _system_fields(system)
    _data_fields(event.get("EventData"), flat)
    _data_fields(event.get("UserData"), flat)
    flat["module"] = "windows-eventlog"
    flat["location"] = str(flat.get("Channel", "windows"))
    return flat
