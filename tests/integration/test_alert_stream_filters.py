"""The Alerts page's live stream is filtered by the server with the page's own filters."""

from __future__ import annotations

import html
import json
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

from tests.integration.test_console_alerts import _raise
from tests.integration.test_console_pages import (
    default_organisation,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.alert import service as alert_service
from puffin.alert.schemas import AlertStatus, AlertUpdate, Detection, Level
from puffin.core.clock import utcnow
from puffin.core.db import transaction


def _events(body: str) -> list[tuple[str, dict]]:
    found = []
    for block in body.split("\n\n"):
        kind = re.search(r"^event: (\w+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if kind and data:
            found.append((kind.group(1), json.loads(data.group(1))))
    return found


def _close(server, organisation_id, alert_id) -> None:  # noqa: F811
    with transaction(server.factory) as session:
        alert_service.update_alert(
            session=session,
            organisation_id=organisation_id,
            alert_id=alert_id,
            alert_in=AlertUpdate(status=AlertStatus.TRUE_POSITIVE),
        )


def test_a_filtered_page_streams_only_matching_alerts_and_drops_those_that_stop_matching(
    server,  # noqa: F811
):
    org = default_organisation(server)
    before = _raise(server, org, title="Open before", source_name="web-01")
    client = signed_in(server)
    page = client.get("/alerts", params={"level": "high", "agent": "web", "status": "open"})
    url = html.unescape(re.search(r'data-live-alerts="([^"]+)"', page.text).group(1))
    assert url.startswith("/api/v1/alerts/stream?")
    raised: dict[str, uuid.UUID] = {}
    errors: list[BaseException] = []

    def later() -> None:
        time.sleep(0.8)
        try:
            raised["match"] = _raise(server, org, title="High on web", source_name="web-01")
            raised["low"] = _raise(server, org, "Low on web", Level.LOW, source_name="web-01")
            raised["other"] = _raise(server, org, title="High on db", source_name="db-01")
            raised["staged"] = _raise(
                server, org, title="Staged on web", source_name="web-01", staged=True
            )
            _close(server, org, before)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=later)
    thread.start()
    with client.stream("GET", url + "&max_seconds=3") as response:
        assert response.status_code == 200
        body = "".join(response.iter_text())
    thread.join()
    assert errors == []
    events = _events(body)
    alerts = [data for kind, data in events if kind == "alert"]
    gone = {data["id"] for kind, data in events if kind == "gone"}
    assert [a["rule_title"] for a in alerts] == ["High on web"]
    assert alerts[0]["id"] == str(raised["match"])
    expected_gone = {str(raised[k]) for k in ("low", "other", "staged")} | {str(before)}
    assert gone == expected_gone


def test_the_stream_refuses_bad_filters_with_a_clear_422(server):  # noqa: F811
    client = signed_in(server)
    response = client.get("/api/v1/alerts/stream", params={"level": "apocalyptic"})
    assert response.status_code == 422
    assert "level" in response.text


def _raise_for(server, organisation_id, rule_id: str, title: str) -> uuid.UUID:  # noqa: F811
    with transaction(server.factory) as session:
        alert, _ = alert_service.raise_alert(
            session=session,
            organisation_id=organisation_id,
            detection=Detection(rule_id=rule_id, rule_title=title, level=Level.HIGH),
        )
    return alert.id


def _form_time(moment: datetime) -> str:
    """Return a time the way the page's datetime-local inputs send it: no zone, UTC."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def test_rule_text_and_time_filters_apply_to_the_page_and_to_its_stream(server):  # noqa: F811
    org = default_organisation(server)
    _raise_for(server, org, "r-web", "SQL injection from a scanner")
    _raise_for(server, org, "r-ssh", "SQL injection lookalike on SSH")
    client = signed_in(server)
    hour_ago = _form_time(utcnow() - timedelta(hours=1))
    params = {"rule_id": "r-web", "text": "injection", "since": hour_ago}
    page = client.get("/alerts", params=params)
    assert page.status_code == 200, page.text
    assert "SQL injection from a scanner" in page.text
    assert "lookalike" not in page.text
    ended = client.get("/alerts", params={"until": hour_ago})
    assert ended.status_code == 200
    assert "No alerts match these filters." in ended.text
    assert client.get("/alerts", params={"since": "yesterday"}).status_code == 422
    url = html.unescape(re.search(r'data-live-alerts="([^"]+)"', page.text).group(1))
    raised: dict[str, uuid.UUID] = {}

    def later() -> None:
        time.sleep(0.8)
        raised["match"] = _raise_for(server, org, "r-web", "Injection in a cookie")
        raised["other_rule"] = _raise_for(server, org, "r-ssh", "Injection over SSH")
        raised["other_text"] = _raise_for(server, org, "r-web", "Path traversal")

    thread = threading.Thread(target=later)
    thread.start()
    with client.stream("GET", url + "&max_seconds=3") as response:
        assert response.status_code == 200
        body = "".join(response.iter_text())
    thread.join()
    events = _events(body)
    assert [data["id"] for kind, data in events if kind == "alert"] == [str(raised["match"])]
    gone = {data["id"] for kind, data in events if kind == "gone"}
    assert gone == {str(raised["other_rule"]), str(raised["other_text"])}
