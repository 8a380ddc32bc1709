"""Webhook tokens: HS256 JWTs with an expiry, or a static token, checked in constant time."""

from __future__ import annotations

import hmac
import os
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import jwt

from puffin.core.clock import utcnow
from puffin.core.errors import Unauthenticated
from puffin.intel.misp_fixer.settings import FixerSettings

ISSUER = "puffin"
AUDIENCE = "misp-fixer"
SUBJECT = "misp-workflow"
_ALGORITHM = "HS256"
_SECRET_FILE = Path("misp-fixer") / "jwt-secret"


class TokenRefused(Unauthenticated):
    """The webhook token is missing, malformed, forged or expired."""


def issue(*, secret: str, days: int = 365, now: datetime | None = None) -> str:
    """Return a signed token for MISP's workflow that expires after `days` days."""
    if days < 1:
        raise ValueError("a token must be valid for at least one day")
    issued = now or utcnow()
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": SUBJECT,
        "iat": issued,
        "exp": issued + timedelta(days=days),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def verify(token: str | None, *, jwt_secret: str | None, static_token: str | None = None) -> str:
    """Return who the token stands for ("static" or the JWT subject), or raise TokenRefused.

    The static token is compared with `hmac.compare_digest`; a JWT must be HS256, signed
    with the secret, carry this issuer and audience, and not be expired. The reasons in
    the errors never repeat the token.
    """
    if not token:
        raise TokenRefused("missing bearer token")
    if static_token and hmac.compare_digest(token.encode(), static_token.encode()):
        return "static"
    if not jwt_secret:
        raise TokenRefused("invalid token")
    return _verify_jwt(token, jwt_secret)


def bearer(authorization: str | None) -> str | None:
    """Return the token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def jwt_secret(settings: FixerSettings, data_dir: Path) -> str:
    """Return the configured secret, or the one generated once into the data directory."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    path = data_dir / _SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_private(path, secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


def _verify_jwt(token: str, secret: str) -> str:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[_ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise TokenRefused("expired token") from error
    except jwt.InvalidTokenError as error:
        raise TokenRefused("invalid token") from error
    return str(claims["sub"])


def _write_private(path: Path, text: str) -> None:
    """Create a file readable by its owner only, refusing to follow an existing one."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
