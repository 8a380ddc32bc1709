"""Console cookies and tokens: session cookie, login CSRF, signed flash messages, redirects."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import urlsplit

from fastapi import Request, Response

from puffin.auth.dependencies import SESSION_COOKIE
from puffin.core.crypto import random_token, tokens_equal
from puffin.core.state import AppState

LOGIN_CSRF_COOKIE = "puffin_login_csrf"
FLASH_COOKIE = "puffin_flash"
CSRF_FIELD = "csrf_token"
_FLASH_KINDS = frozenset({"success", "error", "info"})


def app_state(request: Request) -> AppState:
    """Return the application's state."""
    state: AppState = request.app.state.puffin
    return state


def _sign(secret: str, purpose: str, value: str) -> str:
    message = f"{purpose}:{value}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


# --- login form CSRF (there is no session yet, so a double-submit token) -------------


def new_login_csrf(state: AppState) -> tuple[str, str]:
    """Return (cookie nonce, form token) for a fresh login form."""
    nonce = random_token(24)
    return nonce, _sign(state.secret_key, "login-csrf", nonce)


def login_csrf_valid(state: AppState, cookie_nonce: str | None, form_token: str | None) -> bool:
    """Return whether the login form's token matches the nonce in its cookie."""
    if not cookie_nonce or not form_token:
        return False
    return tokens_equal(form_token, _sign(state.secret_key, "login-csrf", cookie_nonce))


def set_login_csrf_cookie(response: Response, state: AppState, nonce: str) -> None:
    """Attach the login form's nonce cookie."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        nonce,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=state.settings.tls,
        path="/login",
    )


# --- the session cookie --------------------------------------------------------------


def set_session_cookie(response: Response, state: AppState, token: str) -> None:
    """Attach the console session cookie: HttpOnly, SameSite=Lax, Secure over HTTPS."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=state.settings.session_max_age_seconds,
        httponly=True,
        samesite="lax",
        secure=state.settings.tls,
        path="/",
    )


def clear_session_cookie(response: Response, state: AppState) -> None:
    """Remove the console session cookie."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=state.settings.tls
    )


# --- flash messages: one-shot notes carried across a redirect ------------------------


def set_flash(response: Response, state: AppState, message: str, kind: str = "success") -> None:
    """Attach a signed one-shot message shown by the next page."""
    payload = json.dumps({"kind": kind, "message": message[:500]}).encode()
    value = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    signed = f"{value}.{_sign(state.secret_key, 'flash', value)}"
    response.set_cookie(
        FLASH_COOKIE, signed, max_age=60, httponly=True, samesite="lax", secure=state.settings.tls
    )


def read_flash(request: Request, state: AppState) -> dict[str, str] | None:
    """Return the flash message sent with this request, if its signature holds."""
    raw = request.cookies.get(FLASH_COOKIE, "")
    value, _, signature = raw.partition(".")
    if not value or not tokens_equal(signature, _sign(state.secret_key, "flash", value)):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in _FLASH_KINDS:
        return None
    return {"kind": str(data["kind"]), "message": str(data.get("message", ""))}


# --- redirects -----------------------------------------------------------------------


def safe_next(target: str | None, default: str = "/") -> str:
    """Return `target` when it is a path on this site, else `default` (no open redirects)."""
    if not target or len(target) > 2000 or not target.startswith("/"):
        return default
    if target.startswith("//") or "\\" in target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
