"""Console token helpers: safe redirects, signed flash messages and the login CSRF pair."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from puffin.web.security import login_csrf_valid, new_login_csrf, safe_next


@pytest.mark.parametrize(
    "target",
    [
        "/admin/users",
        "/admin/audit?action=create&offset=50",
        "/",
    ],
)
def test_local_paths_are_kept(target):
    assert safe_next(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "admin",
        "https://evil.example/",
        "//evil.example/path",
        "/\\evil.example",
        "/admin\r\nSet-Cookie: x=1",
        "/" + "a" * 2001,
    ],
)
def test_other_targets_fall_back_to_the_default(target):
    assert safe_next(target, default="/home") == "/home"


def _state(secret: str) -> SimpleNamespace:
    return SimpleNamespace(secret_key=secret)


def test_login_csrf_token_matches_only_its_own_nonce_and_secret():
    state = _state("s" * 40)
    nonce, token = new_login_csrf(state)  # type: ignore[arg-type]
    other_nonce, _ = new_login_csrf(state)  # type: ignore[arg-type]
    assert login_csrf_valid(state, nonce, token)  # type: ignore[arg-type]
    assert not login_csrf_valid(state, other_nonce, token)  # type: ignore[arg-type]
    assert not login_csrf_valid(_state("t" * 40), nonce, token)  # type: ignore[arg-type]
    assert not login_csrf_valid(state, None, token)  # type: ignore[arg-type]
    assert not login_csrf_valid(state, nonce, "")  # type: ignore[arg-type]
