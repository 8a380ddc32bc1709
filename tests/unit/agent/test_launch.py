"""`python -m puffin.agent run` (argparse, no typer) matches `puffin agent run` (typer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import typer.main

from puffin.agent import launch
from puffin.agent.cli import app


def _agent(*words: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "puffin.agent", *words],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_both_run_commands_take_the_same_options_with_the_same_defaults() -> None:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    typer_options = {option.opts[0]: (option.default, option.multiple) for option in command.params}
    argparse_options = {
        action.option_strings[0]: (action.default, action.default == [])
        for action in launch.parser()._actions
        if action.option_strings and action.dest != "help"
    }
    assert (
        set(typer_options)
        == set(argparse_options)
        == {
            "--log",
            "--state-dir",
            "--config",
            "--seconds",
        }
    )
    for name, (default, multiple) in typer_options.items():
        assert argparse_options[name][1] == multiple, name
        assert (argparse_options[name][0] or None) == (default or None), name


def test_run_without_enrolment_says_so_and_loads_neither_typer_nor_pydantic(
    tmp_path: Path,
) -> None:
    done = _agent("run", "--state-dir", str(tmp_path / "empty"))
    assert done.returncode == 1
    assert "not enrolled; run `puffin agent enroll` first" in done.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in done.stderr.splitlines()}
    assert "puffin" in imported
    assert not imported & {"typer", "click", "pydantic", "pydantic_core"}


def test_run_with_a_broken_configuration_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "agent.json"
    config.write_text("{not json")
    done = _agent("run", "--state-dir", str(tmp_path), "--config", str(config))
    assert done.returncode == 2
    assert f"error: {config}:" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_help_and_unknown_options() -> None:
    assert "--state-dir" in _agent("run", "--help").stdout
    unknown = _agent("run", "--no-such-option")
    assert unknown.returncode == 2
    assert "unrecognized arguments: --no-such-option" in unknown.stderr


def test_other_commands_still_go_through_typer(tmp_path: Path) -> None:
    done = _agent("status", "--state-dir", str(tmp_path / "empty"))
    assert done.returncode == 1
    assert "not enrolled" in done.stderr
