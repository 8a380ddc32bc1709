"""The console in headless Chromium over real HTTPS: sign-in, admin pages, switcher, audit."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/puffin-console-admin.png")


def test_admin_creates_organisation_user_and_key_then_switches_and_reads_the_trail(
    page, live_server
):
    page.goto(f"{live_server.url}/admin/users")
    assert "/login?next=/admin/users" in page.url
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(live_server.admin_password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/admin/users")

    page.goto(f"{live_server.url}/admin/organisations")
    page.locator("#field-name").fill("Northwind Traders")
    page.locator("#field-slug").fill("northwind")
    page.get_by_role("button", name="Create organisation").click()
    page.get_by_text("Created organisation Northwind Traders.").wait_for()
    assert page.get_by_role("cell", name="northwind", exact=True).is_visible()

    page.goto(f"{live_server.url}/admin/users")
    page.locator("#field-username").fill("dana")
    page.get_by_label("Display name").fill("Dana Scully")
    page.locator("#field-password").fill("a-long-enough-password")
    page.locator("#field-role").select_option("read-only")
    page.get_by_role("button", name="Create user").click()
    page.get_by_text("Created dana as read-only.").wait_for()

    page.goto(f"{live_server.url}/admin/api-keys")
    page.locator("#field-name").fill("browser-test")
    page.get_by_role("button", name="Create API key").click()
    page.get_by_text("It is shown only this once").wait_for()
    key = page.locator("#api-key-value").inner_text().strip()
    assert key.startswith("pfn_")
    me = httpx.get(
        f"{live_server.url}/api/v1/me",
        headers={"Authorization": f"Bearer {key}"},
        verify=str(live_server.cert_file),
    )
    assert me.status_code == 200
    assert me.json()["user"]["username"] == "admin"

    page.goto(f"{live_server.url}/admin")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator("#org-switch").select_option(label="Northwind Traders — site admin")
    page.get_by_text("Now working in Northwind Traders").wait_for()
    assert page.locator("#org-switch option:checked").inner_text().startswith("Northwind Traders")
    page.goto(f"{live_server.url}/admin/users")
    assert page.get_by_text("Members of Northwind Traders").is_visible()

    page.goto(f"{live_server.url}/admin/audit?scope=all")
    table = page.locator("table.audit-table")
    for summary in [
        "created organisation Northwind Traders",
        "created user dana as read-only",
        "created API key browser-test",
        "admin signed in",
    ]:
        assert table.get_by_text(summary).first.is_visible(), summary
    page.get_by_label("Action").fill("create")
    page.get_by_label("Object type").fill("api-key")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"object_type=api-key"))
    rows = table.locator("tbody tr")
    assert rows.count() == 1
    assert "created API key browser-test" in rows.first.inner_text()


def test_wrong_password_then_lockout_message(page, live_server, sign_in):
    sign_in(page, live_server, "nobody-here", "wrong-password")
    assert page.locator("#login-error").inner_text() == "Wrong username or password."
    for _ in range(live_server.max_failures - 1):
        sign_in(page, live_server, "nobody-here", "wrong-password")
    sign_in(page, live_server, "nobody-here", "wrong-password")
    message = page.locator("#login-error").inner_text()
    assert "Too many failed sign-ins" in message
    assert re.search(r"try again in \d+ s", message)


def test_theme_toggle_is_remembered_and_keyboard_shortcuts_work(page, live_server, sign_in):
    sign_in(page, live_server, "admin", live_server.admin_password)
    page.wait_for_url(f"{live_server.url}/")
    assert page.locator("html").get_attribute("data-theme") == "dark"
    page.get_by_role("button", name="Light theme").click()
    page.reload()
    assert page.locator("html").get_attribute("data-theme") == "light"
    page.keyboard.press("g")
    page.keyboard.press("m")
    page.wait_for_url(f"{live_server.url}/admin")
    page.goto(f"{live_server.url}/admin/audit")
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "field-text"
