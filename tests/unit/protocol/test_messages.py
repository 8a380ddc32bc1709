"""The agent's standard-library messages agree with the server's pydantic wire models."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from puffin.protocol import messages, wire

PAIRS = [
    (messages.BatchAck, wire.BatchAck),
    (messages.TaskResult, wire.TaskResult),
    (messages.Task, wire.Task),
    (messages.KeepAlive, wire.KeepAlive),
    (messages.KeepAliveReply, wire.KeepAliveReply),
]


@pytest.mark.parametrize(("plain", "model"), PAIRS, ids=lambda c: c.__name__)
def test_same_fields_in_the_same_order_with_the_same_defaults(plain: Any, model: Any) -> None:
    fields = dataclasses.fields(plain)
    assert [f.name for f in fields] == list(model.model_fields)
    for item in fields:
        pydantic_field = model.model_fields[item.name]
        if item.default is not dataclasses.MISSING:
            assert pydantic_field.get_default() == item.default
        elif item.default_factory is not dataclasses.MISSING:
            assert pydantic_field.get_default(call_default_factory=True) == item.default_factory()
        else:
            assert pydantic_field.is_required()


def test_a_keepalive_the_agent_sends_is_one_the_server_reads_the_same() -> None:
    task_id = uuid.uuid4()
    report = messages.KeepAlive(
        health={"queued": 3, "at": datetime(2026, 12, 4, 10, 0, tzinfo=UTC), "name": "hôte"},
        config_hash="a" * 64,
        task_results=[messages.TaskResult(task_id=task_id, ok=True, result={"pid": 7})],
        events_sent=50,
        allowed_actions=["block-ip", "unblock-ip"],
    )
    sent = report.model_dump(mode="json")
    read = wire.KeepAlive.model_validate(json.loads(json.dumps(sent)))
    assert read.model_dump(mode="json") == sent
    assert read.task_results[0].task_id == task_id
    assert sent["health"]["at"] == "2026-12-04T10:00:00+00:00"


def test_task_and_result_json_is_byte_for_byte_what_pydantic_writes() -> None:
    # The task journal compares stored result JSON as text, so both must write the same.
    task_id = uuid.uuid4()
    result = {"ip": "203.0.113.9", "note": "bloqué", "nested": {"list": [1, 2.5, None]}}
    assert (
        messages.TaskResult(task_id=task_id, ok=False, result=result).model_dump_json()
        == wire.TaskResult(task_id=task_id, ok=False, result=result).model_dump_json()
    )
    parameters = {"pid": 4242, "name": "nc"}
    assert (
        messages.Task(id=task_id, action="kill-process", parameters=parameters).model_dump_json()
        == wire.Task(id=task_id, action="kill-process", parameters=parameters).model_dump_json()
    )


def test_a_reply_the_server_sends_is_read_by_the_agent() -> None:
    task_id = uuid.uuid4()
    reply = wire.KeepAliveReply(
        config_hash="b" * 64,
        config={"fim": {"paths": ["/etc"]}},
        tasks=[wire.Task(id=task_id, action="block-ip", parameters={"ip": "198.51.100.7"})],
    )
    read = messages.KeepAliveReply.model_validate(
        {**reply.model_dump(mode="json"), "added_later": 1}
    )
    assert read.config == {"fim": {"paths": ["/etc"]}}
    assert read.tasks == [
        messages.Task(id=task_id, action="block-ip", parameters={"ip": "198.51.100.7"})
    ]
    ack = messages.BatchAck.model_validate(
        wire.BatchAck(sequence=9, stored=50, duplicate=False).model_dump()
    )
    assert (ack.sequence, ack.stored, ack.duplicate) == (9, 50, False)


@pytest.mark.parametrize(
    ("plain", "model", "data"),
    [
        (messages.BatchAck, wire.BatchAck, {"sequence": 1, "stored": 1}),
        (messages.BatchAck, wire.BatchAck, [1, 2, 3]),
        (messages.Task, wire.Task, {"id": "not-a-uuid", "action": "block-ip"}),
        (messages.Task, wire.Task, {"id": str(uuid.uuid4()), "action": None}),
        (messages.KeepAliveReply, wire.KeepAliveReply, {"config_hash": "", "config": None}),
        (
            messages.KeepAliveReply,
            wire.KeepAliveReply,
            {"config_hash": "", "config": None, "tasks": [{"action": "x"}]},
        ),
        (messages.KeepAlive, wire.KeepAlive, {"config_hash": "c" * 65}),
        (messages.KeepAlive, wire.KeepAlive, {"events_sent": -1}),
        (messages.KeepAlive, wire.KeepAlive, {"allowed_actions": ["a"] * 21}),
        (messages.KeepAlive, wire.KeepAlive, {"allowed_actions": [""]}),
    ],
)
def test_what_pydantic_refuses_is_refused_with_a_value_error(
    plain: Any, model: Any, data: Any
) -> None:
    with pytest.raises(ValueError):
        model.model_validate(data)
    with pytest.raises(ValueError) as refused:
        plain.model_validate(data)
    assert str(refused.value).startswith(("BatchAck", "Task", "KeepAlive"))  # says where


def test_bad_json_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid JSON"):
        messages.Task.model_validate_json("{not json")


def test_the_running_agent_does_not_load_pydantic() -> None:
    code = (
        "import sys, puffin.agent.cli, puffin.agent.runner, puffin.agent.delivery, "
        "puffin.agent.tasks, puffin.agent.response; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pydantic'))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"
