"""The agent's enrolment: identity, credential and the server certificate it pinned."""

from __future__ import annotations

import hashlib
import json
import os
import ssl
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

ENROLMENT_FILE = "enrolment.json"
CERT_FILE = "server.pem"


@dataclass(frozen=True)
class Enrolment:
    """What the agent needs to talk to its server."""

    server: str
    agent_id: str
    organisation_id: str
    credential: str
    fingerprint: str
    name: str
    sequence_start: int = 1  # the first batch sequence number of this enrolment


def fingerprint_of_pem(pem: str) -> str:
    """Return the SHA-256 fingerprint of a PEM certificate as colon-separated hex."""
    der = ssl.PEM_cert_to_DER_cert(pem)
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def prepare_state_dir(state_dir: Path) -> None:
    """Create the state directory readable by its owner only."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)


def save(state_dir: Path, enrolment: Enrolment, cert_pem: str) -> None:
    """Store the enrolment and the pinned certificate, owner-only."""
    prepare_state_dir(state_dir)
    _write_private(state_dir / CERT_FILE, cert_pem)
    _write_private(state_dir / ENROLMENT_FILE, json.dumps(asdict(enrolment), indent=2))


def load(state_dir: Path) -> tuple[Enrolment, str]:
    """Return the stored enrolment and pinned certificate, or raise FileNotFoundError."""
    data = json.loads((state_dir / ENROLMENT_FILE).read_text())
    known = {field.name for field in fields(Enrolment)}
    return Enrolment(**{k: v for k, v in data.items() if k in known}), (
        state_dir / CERT_FILE
    ).read_text()


def save_json(path: Path, value: Any) -> None:
    """Replace a small JSON file atomically, readable by the agent only."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(value, separators=(",", ":")))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def load_json(path: Path) -> Any:
    """Return a JSON file's content, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
