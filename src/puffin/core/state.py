"""What the application owns and hands to requests: settings, engines, registries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from puffin.core.metrics import HttpMetrics
from puffin.core.settings import Settings


@dataclass
class AppState:
    """Built once by `create_app` and stored on `app.state.puffin`."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    secret_key: str
    metrics: HttpMetrics
    tls_fingerprint: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)
