"""Browser fixtures: a Puffin server on loopback over HTTPS and Debian's headless Chromium.

Every browser test is skipped, with the reason, when `/usr/bin/chromium` or Playwright is
missing; nothing fails at collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.loopback import free_port, serving_https

from puffin.app import create_app
from puffin.core.settings import Settings
from puffin.core.tls import ensure_certificate

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_FAILURES = 3


@dataclass
class LiveServer:
    """A Puffin server on loopback over HTTPS."""

    url: str
    cert_file: Path
    admin_password: str
    data_dir: Path
    max_failures: int = MAX_FAILURES


def _require_chromium() -> Any:
    """Return Playwright's sync API, or skip when Chromium or Playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM})")
    return pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Run the app under uvicorn in a thread, on a free loopback port with its own cert."""
    _require_chromium()  # no point starting a server that no browser will visit
    data_dir = tmp_path_factory.mktemp("puffin")
    paths = ensure_certificate(data_dir, None, None)
    port = free_port()
    settings = Settings(
        data_dir=data_dir,
        environment="test",
        tls=True,
        port=port,
        login_max_failures=MAX_FAILURES,
    )
    announced: list[str] = []
    app = create_app(settings, announce=announced.append)
    with serving_https(app, port, paths.cert_file, paths.key_file):
        password = announced[0].split("password: ")[1].strip()
        yield LiveServer(f"https://127.0.0.1:{port}", paths.cert_file, password, data_dir)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Launch Debian's Chromium headless, once per test module."""
    playwright_api = _require_chromium()
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab in a fresh context that accepts the server's self-signed certificate."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 900})
    # Generous: in CI these tests share two cores with the outage and e2e tests.
    context.set_default_timeout(30_000)
    tab = context.new_page()
    yield tab
    context.close()


def _sign_in(page: Any, server: LiveServer, username: str, password: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    # Wait for the answer to the form itself, so a slow server cannot race the caller's
    # next step (CI once timed out waiting for the dashboard after a sign-in).
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


@pytest.fixture
def sign_in() -> Callable[[Any, LiveServer, str, str], None]:
    """Return `sign_in(page, server, username, password)`, which submits the login form."""
    return _sign_in
