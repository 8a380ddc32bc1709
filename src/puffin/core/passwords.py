"""Password hashing with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()

# A hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash("puffin-dummy-password-for-timing")


def hash_password(password: str) -> str:
    """Return an argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Return whether the password matches; spends the same time when there is no hash."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Return whether the hash uses outdated parameters."""
    return _hasher.check_needs_rehash(password_hash)
