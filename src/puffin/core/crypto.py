"""Secrets, token hashing and constant-time checks."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


def random_token(nbytes: int = 32) -> str:
    """Return a URL-safe random token."""
    return secrets.token_urlsafe(nbytes)


def random_password(length: int = 20) -> str:
    """Return a random password of letters and digits, easy to copy from a terminal."""
    alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest of a high-entropy token (API keys, agent credentials)."""
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(left: str, right: str) -> bool:
    """Compare two secrets in constant time."""
    return hmac.compare_digest(left.encode(), right.encode())


def write_private_file(path: Path, data: bytes) -> None:
    """Write a file readable by its owner only, creating parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create_secret(path: Path) -> str:
    """Return the secret stored at path, generating and storing one on first use."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = random_token(48)
    write_private_file(path, value.encode())
    return value
