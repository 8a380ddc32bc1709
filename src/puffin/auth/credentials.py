"""Proving who calls: passwords with throttling, console sessions and API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from puffin.auth import service as auth_service
from puffin.auth.models import ApiKey, ConsoleSession, LoginThrottle, User
from puffin.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPage,
    ApiKeyRead,
    Principal,
    Role,
)
from puffin.core.changes import record_change, revoke_once
from puffin.core.clock import utcnow
from puffin.core.crypto import hash_token, random_token, tokens_equal
from puffin.core.errors import Forbidden, NotFound, TooManyRequests, Unauthenticated
from puffin.core.pagination import PageParams, paginate
from puffin.core.passwords import hash_password, needs_rehash, verify_password

API_KEY_PREFIX = "pfn_"
_INVALID_LOGIN = "wrong username or password"


@dataclass(frozen=True)
class ThrottlePolicy:
    """How many failed sign-ins lock a username out, and for how long."""

    max_failures: int = 5
    lockout_seconds: int = 300


@dataclass(frozen=True)
class SessionInfo:
    """A console session as the web layer needs it."""

    token: str
    csrf_token: str
    principal: Principal


# --- sign-in and throttling ----------------------------------------------------------


def _throttle_key(username: str) -> str:
    return username.strip().lower()[:200]


def _check_throttle(session: Session, key: str) -> None:
    row = session.get(LoginThrottle, key)
    if row and row.locked_until and row.locked_until > utcnow():
        wait = int((row.locked_until - utcnow()).total_seconds()) + 1
        raise TooManyRequests(
            f"too many failed sign-ins for this account; try again in {wait} s", wait
        )


def _note_failure(session: Session, key: str, policy: ThrottlePolicy) -> None:
    row = session.get(LoginThrottle, key) or LoginThrottle(key=key, failures=0)
    session.add(row)
    row.failures = (row.failures or 0) + 1
    row.last_failure_at = utcnow()
    if row.failures >= policy.max_failures:
        row.locked_until = utcnow() + timedelta(seconds=policy.lockout_seconds)
        row.failures = 0
    session.flush()


def verify_credentials(
    *, session: Session, username: str, password: str, policy: ThrottlePolicy
) -> User:
    """Return the active user with this password; count failures and lock out guessers.

    The failure count is flushed before raising, so the caller must commit it even when
    sign-in fails.
    """
    key = _throttle_key(username)
    _check_throttle(session, key)
    user = session.scalar(select(User).where(func.lower(User.username) == key))
    valid = verify_password(user.password_hash if user else None, password)
    if user is None or not valid or not user.is_active:
        _note_failure(session, key, policy)
        raise Unauthenticated(_INVALID_LOGIN)
    throttle = session.get(LoginThrottle, key)
    if throttle is not None:
        session.delete(throttle)
    if user.password_hash and needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


def _principal(
    session: Session, user: User, organisation_id: uuid.UUID | None, via: str
) -> Principal:
    role = (
        auth_service.role_in(session=session, user_id=user.id, organisation_id=organisation_id)
        if organisation_id
        else None
    )
    return Principal(
        user_id=user.id,
        username=user.username,
        is_site_admin=user.is_site_admin,
        organisation_id=organisation_id,
        role=role,
        via=via,
    )


def _default_organisation(session: Session, user: User) -> uuid.UUID | None:
    memberships = auth_service.memberships_of(session=session, user_id=user.id)
    return memberships[0].organisation_id if memberships else None


# --- console sessions ----------------------------------------------------------------


def open_session(
    *, session: Session, user: User, ip: str | None, max_age_seconds: int
) -> SessionInfo:
    """Start a console session for a signed-in user and return its cookie token."""
    token = random_token()
    organisation_id = _default_organisation(session, user)
    row = ConsoleSession(
        token_hash=hash_token(token),
        user_id=user.id,
        organisation_id=organisation_id,
        csrf_token=random_token(24),
        ip=ip,
        expires_at=utcnow() + timedelta(seconds=max_age_seconds),
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        action="sign-in",
        object_type="user",
        object_id=user.id,
        organisation_id=organisation_id,
        summary=f"{user.username} signed in",
    )
    return SessionInfo(
        token=token,
        csrf_token=row.csrf_token,
        principal=_principal(session, user, organisation_id, "session"),
    )


def _live_session(session: Session, token: str) -> ConsoleSession:
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
    )
    if row is None or not tokens_equal(row.token_hash, hash_token(token)):
        raise Unauthenticated("not signed in")
    if row.expires_at <= utcnow():
        session.delete(row)
        session.flush()
        raise Unauthenticated("the session has expired; sign in again")
    return row


def resume_session(*, session: Session, token: str) -> SessionInfo:
    """Return the session behind a cookie token, or raise Unauthenticated."""
    row = _live_session(session, token)
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("the account is disabled")
    organisation_id = row.organisation_id
    if organisation_id and not user.is_site_admin:
        role = auth_service.role_in(
            session=session, user_id=user.id, organisation_id=organisation_id
        )
        organisation_id = organisation_id if role is not None else None
    return SessionInfo(
        token=token,
        csrf_token=row.csrf_token,
        principal=_principal(session, user, organisation_id, "session"),
    )


def switch_organisation(*, session: Session, token: str, organisation_id: uuid.UUID) -> SessionInfo:
    """Make another organisation the session's current one, if the user may act in it."""
    row = _live_session(session, token)
    user = session.get(User, row.user_id)
    if user is None:
        raise Unauthenticated("not signed in")
    role = auth_service.role_in(session=session, user_id=user.id, organisation_id=organisation_id)
    if role is None and not user.is_site_admin:
        raise NotFound(f"organisation {organisation_id} not found")
    auth_service.get_organisation(session=session, organisation_id=organisation_id)
    row.organisation_id = organisation_id
    session.flush()
    return resume_session(session=session, token=token)


def close_session(*, session: Session, token: str) -> None:
    """Sign out: forget the session behind this token."""
    row = session.scalar(
        select(ConsoleSession).where(ConsoleSession.token_hash == hash_token(token))
    )
    if row is not None:
        session.delete(row)
        session.flush()


# --- API keys ------------------------------------------------------------------------


def create_api_key(
    *, session: Session, principal: Principal, key_in: ApiKeyCreate
) -> ApiKeyCreated:
    """Create an API key for the caller in their current organisation; the key is shown once."""
    if principal.organisation_id is None:
        raise NotFound("choose an organisation first")
    owner_id = key_in.user_id or principal.user_id
    if owner_id != principal.user_id:
        if not principal.has_role(Role.ADMIN):
            raise Forbidden("only an admin may create API keys for other users")
        auth_service.get_user(
            session=session, organisation_id=principal.organisation_id, user_id=owner_id
        )
    secret = random_token(32)
    prefix = secret[:8]
    key = f"{API_KEY_PREFIX}{secret}"
    expires_at = (
        utcnow() + timedelta(days=key_in.expires_in_days) if key_in.expires_in_days else None
    )
    row = ApiKey(
        user_id=owner_id,
        organisation_id=principal.organisation_id,
        name=key_in.name,
        prefix=prefix,
        key_hash=hash_token(key),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        action="create",
        object_type="api-key",
        object_id=row.id,
        organisation_id=principal.organisation_id,
        summary=f"created API key {row.name} ({prefix}…)",
    )
    return ApiKeyCreated.model_validate({**ApiKeyRead.model_validate(row).model_dump(), "key": key})


def list_api_keys(
    *, session: Session, organisation_id: uuid.UUID, user_id: uuid.UUID | None, page: PageParams
) -> ApiKeyPage:
    """Return the organisation's API keys, or one user's."""
    query = select(ApiKey).where(ApiKey.organisation_id == organisation_id)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return paginate(
        session,
        query,
        page=page,
        order_by=(ApiKey.created_at.desc(), ApiKey.id),
        read=ApiKeyRead.model_validate,
    )


def get_api_key(*, session: Session, organisation_id: uuid.UUID, key_id: uuid.UUID) -> ApiKeyRead:
    """Return one API key of this organisation."""
    row = session.get(ApiKey, key_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"API key {key_id} not found")
    return ApiKeyRead.model_validate(row)


def revoke_api_key(
    *,
    session: Session,
    organisation_id: uuid.UUID,
    key_id: uuid.UUID,
    owner_id: uuid.UUID | None,
) -> ApiKeyRead:
    """Revoke an API key of this organisation (only the owner's when owner_id is given)."""
    row = session.get(ApiKey, key_id)
    if row is None or row.organisation_id != organisation_id:
        raise NotFound(f"API key {key_id} not found")
    if owner_id is not None and row.user_id != owner_id:
        raise NotFound(f"API key {key_id} not found")
    revoke_once(
        session,
        row,
        object_type="api-key",
        organisation_id=organisation_id,
        summary=f"revoked API key {row.name} ({row.prefix}…)",
    )
    return ApiKeyRead.model_validate(row)


def authenticate_api_key(*, session: Session, key: str) -> Principal:
    """Return the caller behind a bearer API key, or raise Unauthenticated."""
    if not key.startswith(API_KEY_PREFIX) or len(key) > 200:
        raise Unauthenticated("invalid API key")
    digest = hash_token(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or not tokens_equal(row.key_hash, digest):
        raise Unauthenticated("invalid API key")
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Unauthenticated("the API key is revoked or expired")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("the API key's user is disabled")
    principal = _principal(session, user, row.organisation_id, "api-key")
    if principal.role is None and not user.is_site_admin:
        raise Unauthenticated("the API key's user is no longer a member of its organisation")
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now
        session.flush()
    return principal
