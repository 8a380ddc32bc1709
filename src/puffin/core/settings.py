"""Server settings, read from `puffin.toml` and `PUFFIN_*` variables, validated once."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Environment = Literal["development", "production", "test"]

# Values that must never be accepted as a secret outside development.
_WEAK_SECRETS = frozenset({"", "changeme", "change-me", "secret", "puffin", "password", "admin"})
_MIN_SECRET_LENGTH = 32


# --- detection: rule placeholders and the default alert dedupe window ---------------------

_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_MAX_DEDUPE_WINDOW_SECONDS = 30 * 86_400


def _duration_seconds(value: Any) -> int:
    """Read `600`, `"90s"`, `"10m"`, `"2h"` or `"1d"` as seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or text such as 10m")
    if isinstance(value, int):
        seconds = value
    else:
        match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", str(value))
        if match is None:
            raise ValueError("a duration is a number of seconds or text such as 90s, 10m, 2h, 1d")
        seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if not 0 <= seconds <= _MAX_DEDUPE_WINDOW_SECONDS:
        raise ValueError("the window must be between 0 and 30 days")
    return seconds


def _value_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class DedupeDefaults(BaseModel):
    """How repeats fold into one alert for rules whose YAML has no `puffin: dedupe`."""

    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(
        default_factory=lambda: ["agent"],
        description="Event fields whose values key the fold; `agent` is the sending agent.",
    )
    window: Annotated[int, BeforeValidator(_duration_seconds)] = Field(
        default=0, description="Seconds (or 10m, 1h, …) after an alert's first hit; 0 is off."
    )


class DetectionSettings(BaseModel):
    """The `[detection]` table: `[detection.placeholders]` and `[detection.dedupe]`."""

    model_config = ConfigDict(extra="forbid")

    placeholders: dict[str, Annotated[list[str], BeforeValidator(_value_list)]] = Field(
        default_factory=dict,
        description="Values of Sigma `%name%` placeholders for the `expand` modifier.",
    )
    dedupe: DedupeDefaults = Field(default_factory=DedupeDefaults)
    process: bool | None = Field(
        default=None,
        description="Run live detection in a process of its own, so that matching rules "
        "and raising alerts use another core than the HTTP server. Unset: on under "
        "`puffin server run`, off in an application built by a test.",
    )


# --- end of the detection block -------------------------------------------------------------


def config_file_path() -> Path:
    """Return the settings file to read: `PUFFIN_CONFIG` or `./puffin.toml`."""
    return Path(os.environ.get("PUFFIN_CONFIG", "puffin.toml"))


class Settings(BaseSettings):
    """Everything the server needs to start; built once and passed to `create_app`."""

    model_config = SettingsConfigDict(
        env_prefix="PUFFIN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    environment: Environment = "production"
    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is an embedded SQLite file in the data directory.",
    )
    events_database_url: str | None = Field(
        default=None,
        description="Where high-volume events live; default is events.db in the data directory "
        "for SQLite, or the main database for PostgreSQL.",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Signs sessions and CSRF tokens. Generated into the data directory when unset.",
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    tls: bool = Field(default=True, description="Serve HTTPS. Turn off only behind a TLS proxy.")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    public_url: str | None = None

    session_max_age_seconds: int = Field(default=8 * 3600, ge=60)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)

    log_level: str = "INFO"

    syslog_host: str = "0.0.0.0"  # noqa: S104 - appliances send from the network
    syslog_udp_port: int | None = Field(default=None, ge=0, le=65535)
    syslog_tcp_port: int | None = Field(default=None, ge=0, le=65535)
    syslog_tls_port: int | None = Field(default=None, ge=0, le=65535)
    syslog_organisation: str = Field(
        default="default", description="Slug of the organisation syslog senders belong to."
    )

    misp_fixer: dict[str, Any] = Field(
        default_factory=dict,
        description="The MISP event fixer's settings ([misp_fixer], PUFFIN_MISP_FIXER__*); "
        "validated by puffin.intel.misp_fixer.settings.FixerSettings when the app starts.",
    )

    detection: DetectionSettings = Field(
        default_factory=DetectionSettings,
        description="Rule placeholders and the default dedupe window ([detection.*]).",
    )

    event_retention_days: int = Field(default=30, ge=1, le=3650)
    event_retention_max_events: int = Field(default=50_000_000, ge=1000)
    event_retention_max_bytes: ByteSize | None = Field(
        default=None,
        ge=1024 * 1024,
        description="Keep the stored events (their log lines and fields) under this size, "
        "oldest deleted first: bytes or a size such as '50GiB'. Unset: no size limit.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments first, then the environment, then the TOML file."""
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_file_path())
        return (init_settings, env_settings, toml, file_secret_settings)

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        if self.environment == "development" or self.secret_key is None:
            return self
        value = self.secret_key.get_secret_value()
        if value.lower() in _WEAK_SECRETS or len(value) < _MIN_SECRET_LENGTH:
            raise ValueError(
                f"secret_key is empty, a default or shorter than {_MIN_SECRET_LENGTH} characters; "
                "unset it to have one generated, or set a long random value"
            )
        return self

    @model_validator(mode="after")
    def _tls_files_in_pairs(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        return self

    @property
    def resolved_database_url(self) -> str:
        """Return the state database URL, defaulting to SQLite in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'puffin.db').resolve()}"

    @property
    def resolved_events_database_url(self) -> str:
        """Return the event store URL: its own SQLite file, or the main PostgreSQL database."""
        if self.events_database_url:
            return self.events_database_url
        if self.resolved_database_url.startswith("sqlite"):
            return f"sqlite:///{(self.data_dir / 'events.db').resolve()}"
        return self.resolved_database_url


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the file, environment and explicit overrides."""
    return Settings(**overrides)


def settings_json(settings: Settings) -> str:
    """The settings as JSON a child process can validate again, secrets included.

    (Pydantic masks secrets when it writes JSON; this goes through a pipe to our own child.)
    """

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return value.get_secret_value()
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    return json.dumps(plain(settings.model_dump()), default=str)
