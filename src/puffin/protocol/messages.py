"""The wire messages a running agent exchanges with the gateway, in the standard library.

`puffin.protocol.wire` defines the same messages as pydantic models; the server
validates with those. Building pydantic models costs a process about 15 MB of RSS, a
third of the agent's budget, so the running agent uses these dataclasses instead. They
have the same field names, defaults and limits, the same keyword constructors, and the
`model_validate`, `model_validate_json`, `model_dump` and `model_dump_json` methods the
agent calls, so agent code reads the same with either. Invalid input raises ValueError
(pydantic's ValidationError is a ValueError too); unknown keys are ignored, as the
pydantic models with `extra="ignore"` do. The header names and sequence limits live here
and `wire` re-exports them. tests/unit/protocol/test_messages.py checks that the two
definitions agree.

Enrolment (`EnrollRequest`, `EnrollResponse`) happens once, in its own short command,
and keeps the pydantic models.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import PurePath
from typing import Any, Literal, Self, TypeVar

AGENT_HEADER = "X-Puffin-Agent"
SEQUENCE_HEADER = "X-Puffin-Sequence"
GATEWAY_PREFIX = "/api/agent/v1"
SEQUENCE_EPOCH = 2**40
"""Each enrolment of an agent numbers its batches from its own block of this many."""
MAX_SEQUENCE = 2**62
MAX_EVENTS_SENT = 2**40
MAX_TASK_RESULTS = 1000
MAX_ACTIONS = 20
MAX_ACTION_NAME = 40
MAX_CONFIG_HASH = 64

Mode = Literal["python", "json"]
T = TypeVar("T")


def _json_default(value: Any) -> Any:
    """Write the values pydantic's JSON mode writes that `json` cannot."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID | PurePath):
        return str(value)
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"cannot send a {type(value).__name__} value")


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _loads(text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error}") from error


def _object(data: Any, message: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{message}: expected an object, got {type(data).__name__}")
    return data


def _typed(value: Any, kind: type[T], where: str) -> T:
    """Return value if it has the type (an int is not a bool here, nor a bool an int)."""
    if isinstance(value, bool) and kind is not bool:
        raise ValueError(f"{where}: expected {kind.__name__}, got bool")
    if not isinstance(value, kind):
        raise ValueError(f"{where}: expected {kind.__name__}, got {type(value).__name__}")
    return value


def _uuid(value: Any, where: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(_typed(value, str, where))
    except ValueError as error:
        raise ValueError(f"{where}: not a UUID: {str(value)[:80]!r}") from error


def _required(data: Mapping[str, Any], name: str, message: str) -> Any:
    if name not in data:
        raise ValueError(f"{message}.{name}: field required")
    return data[name]


class _Message(abc.ABC):
    """What every message can do: dump itself and be read from JSON."""

    def _plain(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for item in dataclasses.fields(self):  # type: ignore[arg-type]
            values[item.name] = _plain(getattr(self, item.name))
        return values

    def model_dump(self, mode: Mode = "python") -> dict[str, Any]:
        """Return the fields as a dict; with mode "json", only JSON types (ids as text)."""
        if mode == "json":
            return dict(_loads(self.model_dump_json()))
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}  # type: ignore[arg-type]

    def model_dump_json(self) -> str:
        """Return the message as compact JSON (field order as declared, UTF-8 kept)."""
        return _dumps(self._plain())

    @classmethod
    @abc.abstractmethod
    def model_validate(cls, data: Any) -> Self:
        """Read the message from parsed JSON; raise ValueError if it does not fit."""

    @classmethod
    def model_validate_json(cls, text: str | bytes) -> Self:
        """Read the message from JSON text; raise ValueError if it does not fit."""
        return cls.model_validate(_loads(text))


def _plain(value: Any) -> Any:
    if isinstance(value, _Message):
        return value._plain()
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@dataclass
class BatchAck(_Message):
    """The server stored (or had already stored) the batch with this sequence."""

    sequence: int
    stored: int
    duplicate: bool

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Read an acknowledgement."""
        values = _object(data, "BatchAck")
        return cls(
            sequence=_typed(_required(values, "sequence", "BatchAck"), int, "BatchAck.sequence"),
            stored=_typed(_required(values, "stored", "BatchAck"), int, "BatchAck.stored"),
            duplicate=_typed(
                _required(values, "duplicate", "BatchAck"), bool, "BatchAck.duplicate"
            ),
        )


@dataclass
class TaskResult(_Message):
    """What the agent reports for one task."""

    task_id: uuid.UUID
    ok: bool
    result: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.task_id = _uuid(self.task_id, "TaskResult.task_id")
        _typed(self.ok, bool, "TaskResult.ok")
        _typed(self.result, dict, "TaskResult.result")

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Read a task result."""
        values = _object(data, "TaskResult")
        return cls(
            task_id=_required(values, "task_id", "TaskResult"),
            ok=_required(values, "ok", "TaskResult"),
            result=values.get("result", {}),
        )


@dataclass
class Task(_Message):
    """An allow-listed action the server asks for."""

    id: uuid.UUID
    action: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = _uuid(self.id, "Task.id")
        _typed(self.action, str, "Task.action")
        _typed(self.parameters, dict, "Task.parameters")

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Read a task."""
        values = _object(data, "Task")
        return cls(
            id=_required(values, "id", "Task"),
            action=_required(values, "action", "Task"),
            parameters=values.get("parameters", {}),
        )


@dataclass
class KeepAlive(_Message):
    """The agent's periodic report: health counters, what it allows, and finished tasks.

    See `puffin.protocol.wire.KeepAlive` for what each field means.
    """

    health: dict[str, Any] | None = None
    config_hash: str = ""
    task_results: list[TaskResult] = field(default_factory=list)
    events_sent: int = 0
    allowed_actions: list[str] | None = None

    def __post_init__(self) -> None:
        if self.health is not None:
            _typed(self.health, dict, "KeepAlive.health")
        if len(_typed(self.config_hash, str, "KeepAlive.config_hash")) > MAX_CONFIG_HASH:
            raise ValueError(f"KeepAlive.config_hash: at most {MAX_CONFIG_HASH} characters")
        results = _typed(self.task_results, list, "KeepAlive.task_results")
        if len(results) > MAX_TASK_RESULTS:
            raise ValueError(f"KeepAlive.task_results: at most {MAX_TASK_RESULTS} items")
        self.task_results = [
            r if isinstance(r, TaskResult) else TaskResult.model_validate(r) for r in results
        ]
        sent = _typed(self.events_sent, int, "KeepAlive.events_sent")
        if not 0 <= sent <= MAX_EVENTS_SENT:
            raise ValueError(f"KeepAlive.events_sent: must be from 0 to {MAX_EVENTS_SENT}")
        if self.allowed_actions is not None:
            actions = _typed(self.allowed_actions, list, "KeepAlive.allowed_actions")
            if len(actions) > MAX_ACTIONS:
                raise ValueError(f"KeepAlive.allowed_actions: at most {MAX_ACTIONS} items")
            for action in actions:
                if (
                    not 1
                    <= len(_typed(action, str, "KeepAlive.allowed_actions"))
                    <= MAX_ACTION_NAME
                ):
                    raise ValueError(
                        f"KeepAlive.allowed_actions: names have 1 to {MAX_ACTION_NAME} characters"
                    )

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Read a keep-alive."""
        values = _object(data, "KeepAlive")
        return cls(
            health=values.get("health"),
            config_hash=values.get("config_hash", ""),
            task_results=values.get("task_results", []),
            events_sent=values.get("events_sent", 0),
            allowed_actions=values.get("allowed_actions"),
        )


@dataclass
class KeepAliveReply(_Message):
    """Configuration when its hash differs from the agent's, and tasks to run."""

    config_hash: str
    config: dict[str, Any] | None
    tasks: list[Task]

    def __post_init__(self) -> None:
        _typed(self.config_hash, str, "KeepAliveReply.config_hash")
        if self.config is not None:
            _typed(self.config, dict, "KeepAliveReply.config")
        tasks = _typed(self.tasks, list, "KeepAliveReply.tasks")
        self.tasks = [t if isinstance(t, Task) else Task.model_validate(t) for t in tasks]

    @classmethod
    def model_validate(cls, data: Any) -> Self:
        """Read the server's reply to a keep-alive."""
        values = _object(data, "KeepAliveReply")
        return cls(
            config_hash=_required(values, "config_hash", "KeepAliveReply"),
            config=_required(values, "config", "KeepAliveReply"),
            tasks=_required(values, "tasks", "KeepAliveReply"),
        )
