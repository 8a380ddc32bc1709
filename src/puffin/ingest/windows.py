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


def _text(value: Any) -> Any:
    """Return the text of an element that may carry attributes (`{"#text": …}`)."""
    if isinstance(value, Mapping):
        return value.get(TEXT, value.get("Value", ""))
    return value


def _attributes(value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        attributes = value.get(ATTRIBUTES)
        if isinstance(attributes, Mapping):
            return attributes
    return {}


def _system_fields(system: Mapping[str, Any]) -> dict[str, Any]:
    provider = _attributes(system.get("Provider"))
    flat: dict[str, Any] = {
        "EventID": _event_id(system.get("EventID")),
        "Channel": _text(system.get("Channel")),
        "Computer": _text(system.get("Computer")),
        "Provider_Name": provider.get("Name", ""),
        "EventRecordID": _text(system.get("EventRecordID")),
        "TimeCreated": _attributes(system.get("TimeCreated")).get("SystemTime", ""),
    }
    for name in ("Level", "Task", "Opcode", "Keywords", "Version"):
        if name in system:
            flat[name] = _text(system[name])
    execution = _attributes(system.get("Execution"))
    if execution:
        flat["ExecutionProcessID"] = execution.get("ProcessID")
        flat["ExecutionThreadID"] = execution.get("ThreadID")
    security = _attributes(system.get("Security"))
    if security.get("UserID"):
        flat["SecurityUserID"] = security["UserID"]
    return {k: v for k, v in flat.items() if v not in (None, "")}


def _event_id(value: Any) -> Any:
    value = _text(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def _data_fields(section: Any, flat: dict[str, Any]) -> None:
    """Copy EventData/UserData items into the flat event (nested records are flattened)."""
    if isinstance(section, Mapping):
        for name, value in section.items():
            if name == ATTRIBUTES:
                continue
            if isinstance(value, Mapping) and TEXT not in value:
                _data_fields(value, flat)
            else:
                flat.setdefault(name, _text(value))
                if " " in name:
                    # Defender and a few other providers name items "Threat Name";
                    # Sigma rules write the name without its spaces.
                    flat.setdefault(name.replace(" ", ""), flat[name])
    elif isinstance(section, list):
        for index, value in enumerate(section):
            flat.setdefault(f"Data{index}", _text(value))
    elif section not in (None, ""):
        flat.setdefault("Data", section)


def flatten_evtx_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Return the flat event for one `{"Event": …}` record."""
    event = record.get("Event", record)
    if not isinstance(event, Mapping):
        raise ValueError("a Windows event must be an object with an Event element")
    system = event.get("System")
    if not isinstance(system, Mapping):
        raise ValueError("a Windows event must have a System element")
    flat = _system_fields(system)
    _data_fields(event.get("EventData"), flat)
    _data_fields(event.get("UserData"), flat)
    flat["module"] = "windows-eventlog"
    flat["location"] = str(flat.get("Channel", "windows"))
    return flat
