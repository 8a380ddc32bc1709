"""Webhook tokens: what `tokens.verify` accepts and what it refuses."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import pytest

from puffin.intel.misp_fixer import tokens
from puffin.intel.misp_fixer.settings import FixerSettings

SECRET = "a-long-random-secret-for-the-misp-fixer-tests-0123"
STATIC = "a-static-token-of-more-than-thirty-two-characters"


def test_an_issued_token_is_accepted_until_it_expires() -> None:
    token = tokens.issue(secret=SECRET, days=2)

    assert tokens.verify(token, jwt_secret=SECRET) == "misp-workflow"
    old = tokens.issue(secret=SECRET, days=1, now=datetime.now(UTC) - timedelta(days=2))
    with pytest.raises(tokens.TokenRefused, match="expired"):
        tokens.verify(old, jwt_secret=SECRET)


@pytest.mark.parametrize("missing", [None, ""])
def test_a_missing_token_is_refused(missing: str | None) -> None:
    with pytest.raises(tokens.TokenRefused, match="missing"):
        tokens.verify(missing, jwt_secret=SECRET, static_token=STATIC)


def test_bad_tokens_are_refused_without_repeating_them() -> None:
    good = tokens.issue(secret=SECRET)
    header, payload, signature = good.split(".")
    forged = jwt.encode(
        {**jwt.decode(good, options={"verify_signature": False}), "sub": "admin"},
        "another-secret-that-is-long-enough-to-sign",
        algorithm="HS256",
    )
    unsigned = jwt.encode(
        jwt.decode(good, options={"verify_signature": False}), key=None, algorithm="none"
    )
    wrong_audience = jwt.encode(
        {"iss": "puffin", "aud": "someone-else", "sub": "x", "iat": 1, "exp": 4102444800},
        SECRET,
        algorithm="HS256",
    )
    no_expiry = jwt.encode(
        {"iss": "puffin", "aud": "misp-fixer", "sub": "x", "iat": 1}, SECRET, algorithm="HS256"
    )
    for bad in (
        forged,
        unsigned,
        wrong_audience,
        no_expiry,
        f"{header}.{payload}.{signature[:-2]}xx",
        "not-a-token",
        STATIC + "x",
    ):
        with pytest.raises(tokens.TokenRefused) as refused:
            tokens.verify(bad, jwt_secret=SECRET, static_token=STATIC)
        assert bad not in str(refused.value)


def test_the_static_token_is_accepted_and_a_jwt_still_works_beside_it() -> None:
    assert tokens.verify(STATIC, jwt_secret=None, static_token=STATIC) == "static"
    assert tokens.verify(tokens.issue(secret=SECRET), jwt_secret=SECRET, static_token=STATIC)
    with pytest.raises(tokens.TokenRefused):
        tokens.verify(tokens.issue(secret=SECRET), jwt_secret=None, static_token=STATIC)


def test_bearer_header_parsing() -> None:
    assert tokens.bearer("Bearer abc.def") == "abc.def"
    assert tokens.bearer("bearer  abc ") == "abc"
    assert tokens.bearer("Basic abc") is None
    assert tokens.bearer("Bearer ") is None
    assert tokens.bearer(None) is None


def test_an_unset_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    settings = FixerSettings()
    first = tokens.jwt_secret(settings, tmp_path)
    second = tokens.jwt_secret(settings, tmp_path)

    assert first == second
    assert len(first) >= 32
    files = list((tmp_path / "misp-fixer").iterdir())
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    configured = FixerSettings(jwt_secret=SECRET)
    assert tokens.jwt_secret(configured, tmp_path) == SECRET


def test_short_secrets_are_refused_by_the_settings() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        FixerSettings(jwt_secret="short")
    with pytest.raises(ValueError, match="at least 32"):
        FixerSettings(static_token="changeme")
