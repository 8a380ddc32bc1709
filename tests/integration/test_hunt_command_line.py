"""A plain `puffin hunt` command line is parsed without Typer, exactly as Typer parses it.

`puffin.cli.hunting.parse_hunt_argv` reads the command lines it can; anything else (help,
a mistake, an option it does not know) goes to Typer, which explains. These tests hold the
two to the same options and the same results.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from puffin.cli import hunting
from puffin.cli.main import build_app

PUFFIN_BACKENDS = ("sqlite",)  # the command line only: no state database

PLAIN = [
    ["logs"],
    ["a.evtx", "b.evtx", "folder"],
    ["-r", "rules", "logs"],
    ["--rules", "one", "-r", "two", "--rules=three", "-rfour", "logs"],
    ["logs", "--rules", "rules", "more-logs"],  # options between the paths
    ["--jsonl", "out.jsonl", "--jobs", "3", "logs"],
    ["--jsonl=out.jsonl", "-j", "2", "-j8", "--jobs=007", "logs"],
    ["--no-cache", "--placeholders", "values.yml", "logs"],
    ["--no-cache", "--no-cache", "logs"],
    ["-r", "rules", "--", "--rules", "-j"],  # after "--", everything is a path
    ["-", "logs"],
    ["--jsonl", "first.jsonl", "--jsonl", "second.jsonl", "logs"],  # the last one counts
]

LEFT_TO_TYPER = [
    [],  # no path
    ["--help"],
    ["logs", "--help"],
    ["-h", "logs"],
    ["--rule", "rules", "logs"],  # no abbreviations
    ["--jobs", "many", "logs"],
    ["--jobs", "-1", "logs"],
    ["-j", "٣", "logs"],  # a digit, but not an ASCII one
    ["--rules"],
    ["logs", "--jsonl"],
    ["--jsonl=", "logs"],
    ["--no-cache=yes", "logs"],
    ["--version", "logs"],
]


def _typer_parse(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> hunting.HuntOptions:
    seen: list[hunting.HuntOptions] = []
    monkeypatch.setattr(hunting, "hunt", seen.append)
    result = CliRunner().invoke(build_app(["hunt"]), ["hunt", *argv])
    assert result.exit_code == 0, (argv, result.output)
    [options] = seen
    return options


@pytest.mark.parametrize("argv", PLAIN, ids=" ".join)
def test_a_plain_command_line_parses_as_typer_parses_it(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = hunting.parse_hunt_argv(argv)
    assert ours is not None, argv
    assert ours == _typer_parse(argv, monkeypatch)


@pytest.mark.parametrize("argv", LEFT_TO_TYPER, ids=lambda argv: " ".join(argv) or "(none)")
def test_help_and_mistakes_are_left_to_typer(argv: list[str]) -> None:
    assert hunting.parse_hunt_argv(argv) is None


def test_the_plain_parser_knows_exactly_the_options_typer_declares() -> None:
    from typer.main import get_command

    root = get_command(build_app(["hunt"]))
    command = root.commands["hunt"]  # type: ignore[attr-defined]
    declared: dict[str, tuple[str, bool]] = {}
    for param in command.params:
        if param.param_type_name != "option":
            assert param.name == "paths"
            assert param.multiple is False
            assert param.nargs == -1
            continue
        for opt in (*param.opts, *param.secondary_opts):
            declared[opt] = (param.name, not param.is_flag)
    declared.pop("--help", None)
    assert declared == hunting.HUNT_OPTIONS
    fields = set(hunting.HuntOptions.__dataclass_fields__)
    assert {name for name, _ in declared.values()} | {"paths"} == fields


def _puffin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "puffin.cli.main", "hunt", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_help_and_mistakes_still_get_typer_messages(tmp_path: Path) -> None:
    helped = _puffin("--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "--placeholders" in helped.stdout
    assert "--no-cache" in helped.stdout
    missing = _puffin(cwd=tmp_path)
    assert missing.returncode == 2
    assert "Missing argument" in missing.stderr
    wrong = _puffin("--jobs", "many", "logs", cwd=tmp_path)
    assert wrong.returncode == 2
    assert "Invalid value for '--jobs'" in wrong.stderr


def test_a_plain_command_line_hunts_and_a_bad_path_is_explained(tmp_path: Path) -> None:
    rules = tmp_path / "ssh.yml"
    rules.write_text(
        "title: Root login over SSH (test)\n"
        "id: 0c8d3f2e-6a55-4d6f-9f58-7a1e2b3c4d5e\nlevel: high\n"
        "logsource: {product: linux, service: sshd}\n"
        "detection: {selection: {program: sshd, user: root}, condition: selection}\n"
    )
    log = tmp_path / "auth.log"
    log.write_text(
        "Nov 22 10:14:03 web1 sshd[811]: Accepted password for root from 203.0.113.5 port 1 ssh2\n"
    )
    out = tmp_path / "matches.jsonl"
    found = _puffin("-r", str(rules), "--jsonl", str(out), "--no-cache", str(log), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    assert "1 matches in 1 records from 1 files" in found.stderr
    assert '"record_id": 1' in out.read_text()
    absent = _puffin("-r", str(rules), "--no-cache", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert absent.returncode == 2
    assert "no such file or folder" in absent.stderr
