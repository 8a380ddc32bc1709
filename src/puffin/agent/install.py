"""`puffin agent install`: the systemd unit and a starting configuration for the agent.

The agent runs as root (FIM and rootcheck read system files, audit.log is root's, and
response tasks change the firewall), with its state directory private to root.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

UNIT_NAME = "puffin-agent.service"
DEFAULT_CONFIG = {
    "logs": ["/var/log/auth.log", "/var/log/syslog", "/var/log/secure", "/var/log/messages"],
    "fim": {"paths": ["/etc", "/usr/bin", "/usr/sbin", "/bin", "/sbin", "/boot"]},
    "rootcheck": {"interval": 43200},
    "inventory": {"interval": 3600},
    "audit": {"path": "/var/log/audit/audit.log"},
}


def unit_text(*, python: str, state_dir: Path, config_file: Path) -> str:
    """Return the systemd unit that runs the agent with this interpreter and these paths."""
    return f"""# Puffin agent: sends logs, FIM, rootcheck and inventory events to the server.
# Written by `puffin agent install`; enrol first with `puffin agent enroll`.
[Unit]
Description=Puffin MDR agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={python} -m puffin.agent run --state-dir {state_dir} --config {config_file}
Restart=always
RestartSec=5
UMask=0077
Nice=10
IOSchedulingClass=idle
MemoryMax=256M
NoNewPrivileges=yes
PrivateTmp=yes
ProtectHome=read-only
ProtectSystem=full
ReadWritePaths={state_dir}

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class Installed:
    """What `install` wrote (or left alone)."""

    unit: Path
    config: Path
    config_written: bool


def install(
    *,
    state_dir: Path,
    config_file: Path,
    unit_dir: Path,
    python: str | None = None,
) -> Installed:
    """Write the unit (replacing an older one) and the configuration (only if missing)."""
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit = unit_dir / UNIT_NAME
    text = unit_text(python=python or sys.executable, state_dir=state_dir, config_file=config_file)
    unit.write_text(text, encoding="utf-8")
    config_written = False
    if not config_file.exists():
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps(DEFAULT_CONFIG, indent=2) + "\n", encoding="utf-8")
        os.chmod(config_file, 0o600)
        config_written = True
    return Installed(unit, config_file, config_written)
