"""`puffin agent install` writes a unit that runs this agent and keeps an existing config."""

from __future__ import annotations

import json
import subprocess
import sys

from puffin.agent.install import DEFAULT_CONFIG, UNIT_NAME


def _install(tmp_path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "puffin.agent",
            "install",
            "--state-dir",
            str(tmp_path / "state"),
            "--config",
            str(tmp_path / "etc" / "agent.json"),
            "--unit-dir",
            str(tmp_path / "units"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_writes_the_unit_and_a_private_default_config(tmp_path):
    result = _install(tmp_path)
    assert result.returncode == 0, result.stderr
    unit = (tmp_path / "units" / UNIT_NAME).read_text()
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_line == (
        f"ExecStart={sys.executable} -m puffin.agent run --state-dir {tmp_path / 'state'}"
        f" --config {tmp_path / 'etc' / 'agent.json'}"
    )
    assert "WantedBy=multi-user.target" in unit
    config = tmp_path / "etc" / "agent.json"
    assert json.loads(config.read_text()) == DEFAULT_CONFIG
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert "systemctl enable --now puffin-agent.service" in result.stdout


def test_install_keeps_an_operators_config(tmp_path):
    config = tmp_path / "etc" / "agent.json"
    config.parent.mkdir()
    config.write_text('{"fim": {"paths": ["/srv"]}}')
    result = _install(tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(config.read_text()) == {"fim": {"paths": ["/srv"]}}
    assert f"kept {config}" in result.stdout


def test_install_into_a_folder_it_cannot_write_says_so(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    result = _install(tmp_path, "--unit-dir", str(blocked / "units"))
    assert result.returncode == 1
    assert "error:" in result.stderr
