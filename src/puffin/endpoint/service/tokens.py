"""Enrolment tokens: made for an organisation (or to enrol one agent again), used, revoked."""

from __future__ import annotations

import shlex
import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from puffin.core.changes import record_change, revoke_once
from puffin.core.clock import utcnow
from puffin.core.crypto import hash_token, random_token, tokens_equal
from puffin.core.errors import InvalidInput, NotFound, Unauthenticated
from puffin.endpoint.models import EnrollmentToken
from puffin.endpoint.schemas import (
    EnrollmentTokenCreate,
    EnrollmentTokenCreated,
    EnrollmentTokenRead,
)

TOKEN_PREFIX = "pfe_"  # noqa: S105 - a marker, not a secret
PREFIX_LENGTH = 8


def create_enrollment_token(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    token_in: EnrollmentTokenCreate,
    server_fingerprint: str | None,
    agent_id: uuid.UUID | None = None,
) -> EnrollmentTokenCreated:
    """Create an enrolment token; the token itself is returned only now."""
    secret = f"{TOKEN_PREFIX}{random_token(24)}"
    row = EnrollmentToken(
        organisation_id=organisation_id,
        name=token_in.name,
        prefix=secret[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + PREFIX_LENGTH],
        token_hash=hash_token(secret),
        default_group=token_in.default_group,
        max_uses=token_in.max_uses,
        expires_at=utcnow() + timedelta(hours=token_in.expires_in_hours),
        agent_id=agent_id,
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        action="create",
        object_type="enrollment-token",
        object_id=row.id,
        organisation_id=organisation_id,
        summary=f"created enrolment token {row.prefix}… for group {row.default_group}",
        changes={**token_in.model_dump(), "agent_id": str(agent_id) if agent_id else None},
    )
    read = EnrollmentTokenRead.model_validate(row)
    return EnrollmentTokenCreated(
        **read.model_dump(), token=secret, server_fingerprint=server_fingerprint
    )


def list_enrollment_tokens(
    *, session: Session, organisation_id: uuid.UUID
) -> list[EnrollmentTokenRead]:
    """Return the organisation's enrolment tokens, newest first."""
    rows = session.scalars(
        select(EnrollmentToken)
        .where(EnrollmentToken.organisation_id == organisation_id)
        .order_by(EnrollmentToken.created_at.desc())
    )
    return [EnrollmentTokenRead.model_validate(r) for r in rows]


def find_enrollment_token(
    *, session: Session, organisation_id: uuid.UUID, reference: str
) -> EnrollmentTokenRead:
    """Return the organisation's token with this id or prefix (as `list` shows it)."""
    reference = reference.strip().removesuffix("…").removeprefix(TOKEN_PREFIX)
    query = select(EnrollmentToken).where(EnrollmentToken.organisation_id == organisation_id)
    try:
        query = query.where(EnrollmentToken.id == uuid.UUID(reference))
    except ValueError:
        if not reference:
            raise InvalidInput("name a token by its id or prefix") from None
        query = query.where(EnrollmentToken.prefix == reference[:PREFIX_LENGTH])
    rows = list(session.scalars(query))
    if not rows:
        raise NotFound(f"no enrolment token {reference!r} in this organisation")
    if len(rows) > 1:
        raise InvalidInput(f"several tokens start with {reference!r}; use the id")
    return EnrollmentTokenRead.model_validate(rows[0])


def revoke_enrollment_token(
    *, session: Session, organisation_id: uuid.UUID, token_id: uuid.UUID
) -> EnrollmentTokenRead:
    """Stop an enrolment token from being used again."""
    row = session.get(EnrollmentToken, token_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"enrolment token {token_id} not found")
    revoke_once(
        session,
        row,
        object_type="enrollment-token",
        organisation_id=organisation_id,
        summary=f"revoked enrolment token {row.prefix}…",
    )
    return EnrollmentTokenRead.model_validate(row)


def enrol_command(
    *, server: str, token: str, fingerprint: str | None, name: str | None = None
) -> str:
    """Return the command that enrols an endpoint with this token, ready to paste."""
    words = ["puffin", "agent", "enroll", "--server", server, "--token", token]
    if name:
        words += ["--name", name]
    if fingerprint:
        words += ["--fingerprint", fingerprint]
    return shlex.join(words)


def usable_token(session: Session, token: str) -> EnrollmentToken:
    """Return the token row if it may enrol now, or raise Unauthenticated saying why."""
    digest = hash_token(token)
    row = session.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == digest))
    if row is None or not tokens_equal(row.token_hash, digest):
        raise Unauthenticated("unknown enrolment token")
    if row.revoked_at is not None:
        raise Unauthenticated("the enrolment token was revoked")
    if row.expires_at <= utcnow():
        raise Unauthenticated("the enrolment token has expired; ask for a new one")
    if row.max_uses is not None and row.uses >= row.max_uses:
        raise Unauthenticated("the enrolment token has been used up")
    return row
