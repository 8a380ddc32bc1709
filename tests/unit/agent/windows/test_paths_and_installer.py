"""Windows FIM paths (defaults and `%NAME%` expansion), and the PowerShell installer's
calls matching the agent's real command line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from puffin.agent.cli import app
from puffin.agent.windows.paths import default_fim_paths, expand
from puffin.agent.windows.service import command_of, parse_arguments

SCRIPT = Path(__file__).parents[4] / "packaging" / "windows" / "install-agent.ps1"


def test_variables_expand_case_insensitively_and_unknown_ones_stay():
    environ = {"SYSTEMROOT": r"D:\Win", "ProgramData": r"D:\Data"}
    assert expand(r"%SystemRoot%\System32\drivers\etc", environ) == r"D:\Win\System32\drivers\etc"
    assert expand(r"%programdata%\x", environ) == r"D:\Data\x"
    assert expand(r"%NOPE%\x", environ) == r"%NOPE%\x"
    assert expand(r"%SystemDrive%\Users", {}) == r"C:\Users"  # Windows' own default


def test_the_defaults_cover_persistence_places_and_the_users_startup_folders():
    users = [r"C:\Users\alice\AppData\Roaming\Microsoft\Windows\Start Menu\Programs\Startup"]
    paths = default_fim_paths({"SystemRoot": r"C:\Windows"}, user_folders=users)
    for expected in (
        r"C:\Windows\System32\drivers\etc",
        r"C:\Windows\System32\Tasks",
        r"C:\Windows\System32\sethc.exe",
        r"C:\Windows\System32\utilman.exe",
        r"C:\ProgramData\Microsoft\Windows\Start Menu\Programs\StartUp",
        users[0],
    ):
        assert expected in paths
    assert len(paths) == len(set(paths))
    assert not any("%" in path for path in paths)


def _array(name: str) -> list[str]:
    """Return the items of `$name = @(...)` in the script: quoted texts and `$Variables`."""
    found = re.search(rf"^\${name} = @\((.*)\)$", SCRIPT.read_text(), re.MULTILINE)
    assert found, name
    items = re.findall(r'"([^"]*)"|(\$\w+)', found.group(1))
    return [text or variable for text, variable in items]


def test_the_installer_takes_the_documented_parameters():
    text = SCRIPT.read_text()
    for parameter in ("Server", "Token"):
        assert f"[Parameter(Mandatory = $true)] [string] ${parameter}" in text
    for parameter in ("Name", "Fingerprint", "SysmonConfig", "SysmonZip"):
        assert f"[string] ${parameter} = " in text
    assert "[switch] $Sysmon" in text
    assert "SwiftOnSecurity/sysmon-config" in text
    assert "Invoke-Expression" not in text
    assert "iex " not in text


def test_the_installers_enroll_options_are_options_of_puffin_agent_enroll():
    enroll = typer.main.get_command(app).commands["enroll"]  # type: ignore[attr-defined]
    known = {option for param in enroll.params for option in getattr(param, "opts", [])}
    used = [item for item in _array("enrol") if item.startswith("--")]
    assert used == ["--server", "--token", "--state-dir"]
    assert set(used) | {"--name", "--fingerprint"} <= known
    assert '$enrol += @("--name", $Name)' in SCRIPT.read_text()
    assert '$enrol += @("--fingerprint", $Fingerprint)' in SCRIPT.read_text()


def test_the_installers_service_call_parses_as_an_install_with_our_options():
    arguments = _array("service")
    assert arguments[:2] == ["-m", "puffin.agent.windows.service"]
    # $StateDir and $ConfigFile are PowerShell variables; stand-ins take their place here.
    argv = [r"C:\ProgramData\Puffin\Agent" if a == "$StateDir" else a for a in arguments[2:]]
    argv = [r"C:\ProgramData\Puffin\agent.json" if a == "$ConfigFile" else a for a in argv]
    options, rest = parse_arguments([*argv, "install"])
    assert str(options.state_dir) == r"C:\ProgramData\Puffin\Agent"
    assert str(options.config) == r"C:\ProgramData\Puffin\agent.json"
    assert rest == ["--startup", "auto", "install"]
    assert command_of(rest) == "install"


def test_real_time_watching_is_refused_with_a_reason_off_linux(monkeypatch):
    import types

    from puffin.agent import fim_inotify

    monkeypatch.setattr(fim_inotify, "sys", types.SimpleNamespace(platform="win32"))
    with pytest.raises(OSError, match="inotify exists only on Linux, not on win32"):
        fim_inotify.InotifyWatcher()
