"""Settings of the MISP event fixer, with the defaults the issue lists."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from puffin.core.settings import config_file_path
from puffin.core.types import SlugStr
from puffin.intel.misp_fixer.opentip import ZONES

DEFAULT_COMMON_FALSE_POSITIVES: tuple[str, ...] = (
    "0.0.0.0",  # noqa: S104 - a value to recognise, not an address to bind
    "8.8.8.8",
    "google.com",
    "amazon.com",
    "microsoft.com",
    "cloudflare.com",
)

DEFAULT_NON_CORRELATING_TYPES: tuple[str, ...] = (
    "comment",
    "email-subject",
    "email-dst",
    "email-src",
    "hostname",
    "port",
    "link",
    "phone-number",
    "user-agent",
    "size-in-bytes",
    "vulnerability",
    "whois-registrant-email",
    "whois-registrant-name",
    "regkey",
    "regkey|value",
    "text",
    "datetime",
    "campaign-name",
    "attachment",
    "email",
)

DEFAULT_IDS_TYPES: tuple[str, ...] = (
    "ip-src",
    "ip-dst",
    "domain",
    "domain|ip",
    "url",
    "uri",
    "http-method",
    "email-attachment",
    "filename",
    "filename|md5",
    "filename|sha1",
    "filename|sha256",
    "md5",
    "sha1",
    "sha256",
    "authentihash",
    "impfuzzy",
    "tlsh",
    "ssdeep",
    "mutex",
    "registry-key",
    "registry-key|value",
    "ip-src|port",
    "ip-dst|port",
    "asn",
    "cidr",
    "mac-address",
    "x509-fingerprint-md5",
    "x509-fingerprint-sha1",
    "x509-fingerprint-sha256",
    "ja3-fingerprint-md5",
    "btc",
    "iban",
    "bank-account-nr",
    "payment-card-number",
)

DEFAULT_OPENTIP_URL = "https://opentip.kaspersky.com/api/v1/search/"
_MIN_SECRET_LENGTH = 32
_LIST_FIELDS = (
    "skip_orgs",
    "common_false_positives",
    "warninglists_include",
    "warninglists_exclude",
    "opentip_benign_zones",
    "non_correlating_types",
    "ids_types",
)

Action = Literal["flag", "delete"]


class FixerSettings(BaseModel):
    """Everything the fixer needs; Puffin's settings embed it as `misp_fixer`."""

    model_config = ConfigDict(extra="forbid")

    misp_url: str | None = Field(default=None, description="Base URL of MISP, https://…")
    misp_key: SecretStr | None = Field(default=None, description="MISP API key.")
    misp_verify_tls: bool = Field(default=True, description="Verify MISP's certificate.")
    misp_ca_file: Path | None = Field(
        default=None, description="CA bundle to verify MISP with (a private CA)."
    )
    misp_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)

    organisation: SlugStr = Field(
        default="default",
        description="Slug of the Puffin organisation the fixer's runs belong to "
        "(created by `puffin misp-fixer serve` when missing).",
    )
    skip_orgs: list[str] = Field(
        default_factory=list,
        description="Creator organisations (name or UUID) whose events are left alone.",
    )
    lookback_days: int = Field(
        default=7, ge=1, le=3650, description="Only attributes changed this recently are judged."
    )
    common_false_positives: list[str] = Field(
        default_factory=lambda: list(DEFAULT_COMMON_FALSE_POSITIVES)
    )
    warninglists_include: list[str] = Field(
        default_factory=lambda: ["*"], description='Warninglist names that count; "*" = all.'
    )
    warninglists_exclude: list[str] | None = Field(
        default=None,
        description="Warninglist names that never count; default: the lists that give "
        "context rather than benign values (the classifier's default).",
    )
    warninglists_path: Path | None = Field(
        default=None,
        description="A folder of warninglists (lists/<name>/list.json); default: the "
        "data shipped with pymispwarninglists.",
    )

    opentip_api_key: SecretStr | None = Field(
        default=None, description="Kaspersky OpenTIP key; without it OpenTIP is not asked."
    )
    opentip_url: str = DEFAULT_OPENTIP_URL
    opentip_concurrency: int = Field(default=8, ge=1, le=64)
    opentip_cache_ttl_hours: float = Field(default=24.0, gt=0)
    opentip_cache_file: Path | None = Field(
        default=None, description="SQLite cache; default: misp-fixer/opentip.db in data_dir."
    )
    opentip_benign_zones: list[str] = Field(
        default_factory=lambda: ["Green"],
        description="OpenTIP zones that make a value a false positive. Grey never counts.",
    )

    action: Action = Field(
        default="flag",
        description="flag: to_ids off, a tag and a false-positive sighting; delete: soft delete.",
    )
    false_positive_tag: str = Field(default="false-positive", min_length=1)
    sighting_source: str = Field(default="puffin", min_length=1)
    non_correlating_types: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_CORRELATING_TYPES)
    )
    ids_types: list[str] = Field(default_factory=lambda: list(DEFAULT_IDS_TYPES))
    add_correlation_exclusions: bool = Field(
        default=False,
        description="Add false-positive values to MISP's correlation exclusions (instance-wide).",
    )
    max_attributes: int = Field(
        default=4000, ge=0, description="Most values looked up remotely in one run."
    )
    page_size: int = Field(
        default=1000, ge=10, le=20_000, description="Attributes per MISP request."
    )

    static_token: SecretStr | None = Field(
        default=None, description="A fixed webhook token (compared in constant time)."
    )
    jwt_secret: SecretStr | None = Field(
        default=None,
        description="Signs webhook JWTs; generated into the data directory when unset.",
    )

    @field_validator(*_LIST_FIELDS, mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        """Read a list given as JSON text, as a `PUFFIN_MISP_FIXER__*` variable gives it.

        Puffin's settings hold `[misp_fixer]` as a plain mapping, so a variable such as
        PUFFIN_MISP_FIXER__SKIP_ORGS='["CIRCL"]' arrives here as text, not as a list.
        """
        if isinstance(value, str) and value.strip().startswith("["):
            try:
                return json.loads(value)
            except ValueError as error:
                raise ValueError(f"not a JSON list: {error}") from error
        return value

    @field_validator("misp_url", "misp_key", "opentip_api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An empty value (a variable set to "") means unset, not an empty key or URL."""
        if isinstance(value, SecretStr):
            return value if value.get_secret_value().strip() else None
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("misp_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("misp_url must start with https:// (or http://)")
        return value

    @field_validator("opentip_benign_zones")
    @classmethod
    def _known_zones_never_grey(cls, value: list[str]) -> list[str]:
        """Spell zones as OpenTIP does ("green" is Green); refuse Grey and unknown names."""
        spelled = {zone.lower(): zone for zone in ZONES}
        if any(zone.strip().lower() == "grey" for zone in value):
            raise ValueError("Grey means unknown to OpenTIP and never makes a value benign")
        unknown = [zone for zone in value if zone.strip().lower() not in spelled]
        if unknown:
            raise ValueError(
                f"unknown OpenTIP zones {', '.join(map(repr, unknown))}; "
                f"choose from {', '.join(sorted(ZONES - {'Grey'}))}"
            )
        return list(dict.fromkeys(spelled[zone.strip().lower()] for zone in value))

    @field_validator("static_token", "jwt_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < _MIN_SECRET_LENGTH:
            raise ValueError(f"must be at least {_MIN_SECRET_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _types_in_one_list(self) -> FixerSettings:
        both = sorted(set(self.ids_types) & set(self.non_correlating_types))
        if both:
            raise ValueError(
                f"types both IDS and non-correlating: {', '.join(both)}; keep each in one list"
            )
        return self


class StandaloneSettings(BaseSettings):
    """The fixer's part of `puffin.toml` and `PUFFIN_*`, read without the rest of Puffin."""

    model_config = SettingsConfigDict(
        env_prefix="PUFFIN_", env_nested_delimiter="__", extra="ignore"
    )

    data_dir: Path = Path("./var")
    misp_fixer: FixerSettings = Field(default_factory=FixerSettings)

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
        return (init_settings, env_settings, toml)
