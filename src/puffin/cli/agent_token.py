"""`puffin agent-token`: create, list and revoke the tokens endpoints enrol with."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from puffin.cli.common import (
    ConfigOption,
    DataDirOption,
    OrgOption,
    console,
    fail,
    load,
    organisation_session,
)
from puffin.core.settings import Settings

if TYPE_CHECKING:
    from puffin.endpoint.schemas import EnrollmentTokenRead

app = typer.Typer(no_args_is_help=True)

DURATION = re.compile(r"^\s*(\d+)\s*([hdw]?)\s*$", re.IGNORECASE)
HOURS = {"": 1, "h": 1, "d": 24, "w": 24 * 7}
WILDCARDS = ("0.0.0.0", "::", "")  # noqa: S104 - addresses to replace, not to bind


def parse_duration(text: str) -> int:
    """Return hours from `12h`, `7d`, `2w` or a bare number of hours; exit 2 when unclear."""
    match = DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        fail(f"--expires {text!r}: give hours, days or weeks such as 12h, 7d or 2w", 2)
    hours = int(match.group(1)) * HOURS[match.group(2).lower()]
    if hours > 24 * 365:
        fail(f"--expires {text!r}: at most a year (365d)", 2)
    return hours


def server_url(settings: Settings, given: str | None) -> str:
    """Return the address agents reach the server at: given, public, or host and port."""
    if given:
        return given.rstrip("/")
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = socket.getfqdn() if settings.host in WILDCARDS else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{settings.port}"


def server_fingerprint(settings: Settings) -> str | None:
    """Return the SHA-256 of the server's certificate (generated now if it has none yet)."""
    if not settings.tls:
        return None
    from puffin.core.tls import ensure_certificate, fingerprint_of_file

    paths = ensure_certificate(settings.data_dir, settings.tls_cert_file, settings.tls_key_file)
    return fingerprint_of_file(paths.cert_file)


@app.command("create")
def create(
    org: OrgOption = "default",
    expires: str = typer.Option(
        "24h", "--expires", "--ttl", help="How long it may be used: 12h, 7d, 2w (default 24h)."
    ),
    max_uses: int | None = typer.Option(
        None, "--max-uses", min=1, max=100_000, help="How many agents may enrol with it."
    ),
    group: str = typer.Option("default", "--group", help="The group new agents join."),
    name: str = typer.Option("", "--name", help="What the token is for."),
    server: str | None = typer.Option(
        None, "--server", help="The address agents use (default: public_url, or host:port)."
    ),
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create an enrolment token; it is printed once, with the enrol command to paste."""
    from pydantic import ValidationError

    from puffin.endpoint import service as endpoint_service
    from puffin.endpoint.schemas import EnrollmentTokenCreate

    settings = load(config, data_dir)
    try:
        token_in = EnrollmentTokenCreate(
            name=name,
            expires_in_hours=parse_duration(expires),
            max_uses=max_uses,
            default_group=group,
        )
    except ValidationError as error:
        fail("; ".join(f"{e['loc'][0]}: {e['msg']}" for e in error.errors()), 2)
    fingerprint = server_fingerprint(settings)
    with organisation_session(settings, org) as (session, organisation_id):
        created = endpoint_service.create_enrollment_token(
            session=session,
            organisation_id=organisation_id,
            token_in=token_in,
            server_fingerprint=fingerprint,
        )
    command = endpoint_service.enrol_command(
        server=server_url(settings, server), token=created.token, fingerprint=fingerprint
    )
    uses = f"{max_uses} use(s)" if max_uses else "unlimited uses"
    console.print(
        f"enrolment token {created.prefix}… for group {group} in {org}, "
        f"{uses}, until {created.expires_at:%Y-%m-%d %H:%M} UTC; shown once:"
    )
    console.print(created.token, highlight=False, soft_wrap=True)
    if fingerprint:
        console.print(f"server certificate SHA-256: {fingerprint}", highlight=False, soft_wrap=True)
    else:
        console.print("TLS ends at a proxy: add --fingerprint with its certificate's SHA-256.")
    console.print("on the endpoint:")
    console.print(command, highlight=False, soft_wrap=True)


def _state_of(token: EnrollmentTokenRead) -> str:
    from puffin.core.clock import utcnow

    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at <= utcnow():
        return "expired"
    if token.max_uses is not None and token.uses >= token.max_uses:
        return "used up"
    return "usable" if token.agent_id is None else "usable (re-enrols one agent)"


@app.command("list")
def list_tokens(
    org: OrgOption = "default", config: ConfigOption = None, data_dir: DataDirOption = None
) -> None:
    """List an organisation's enrolment tokens (never the tokens themselves)."""
    from puffin.endpoint import service as endpoint_service

    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        tokens = endpoint_service.list_enrollment_tokens(
            session=session, organisation_id=organisation_id
        )
    table = Table("id", "prefix", "name", "group", "uses", "expires", "state")
    for token in tokens:
        limit = f"/{token.max_uses}" if token.max_uses else ""
        table.add_row(
            str(token.id),
            token.prefix + "…",
            token.name,
            token.default_group,
            f"{token.uses}{limit}",
            f"{token.expires_at:%Y-%m-%d %H:%M}",
            _state_of(token),
        )
    console.print(table)


@app.command("revoke")
def revoke(
    token: str = typer.Argument(..., help="The token's id or prefix (`puffin agent-token list`)."),
    org: OrgOption = "default",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an enrolment token; agents already enrolled with it stay enrolled."""
    from puffin.endpoint import service as endpoint_service

    with organisation_session(load(config, data_dir), org) as (session, organisation_id):
        found = endpoint_service.find_enrollment_token(
            session=session, organisation_id=organisation_id, reference=token
        )
        revoked = endpoint_service.revoke_enrollment_token(
            session=session, organisation_id=organisation_id, token_id=found.id
        )
    console.print(f"revoked enrolment token {revoked.prefix}… ({revoked.name or 'no name'})")
