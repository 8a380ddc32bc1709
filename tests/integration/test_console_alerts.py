"""The Alerts pages: filters, detail with the raw event, triage by analysts only."""

from __future__ import annotations

import re
import uuid

from tests.integration.test_console_pages import (
    PASSWORD,
    csrf_of,
    default_organisation,
    make_member,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.alert import service as alert_service
from puffin.alert.schemas import Detection, Level
from puffin.auth.schemas import Role
from puffin.core.db import transaction


def _raise(
    server,  # noqa: F811
    organisation_id,
    title="SSH brute force",
    level=Level.HIGH,
    source_name="",
    staged=False,
) -> uuid.UUID:
    with transaction(server.factory) as session:
        alert, _ = alert_service.raise_alert(
            session=session,
            organisation_id=organisation_id,
            detection=Detection(
                rule_id="r-ssh",
                rule_title=title,
                level=level,
                tags=["attack.credential_access"],
                source_name=source_name,
                event={"src_ip": "203.0.113.7", "full_log": "Failed password for <root>"},
                matched={"program": "sshd"},
                staged=staged,
            ),
        )
    return alert.id


def test_alerts_list_filters_by_level_and_links_to_the_detail(server):  # noqa: F811
    org = default_organisation(server)
    high = _raise(server, org)
    _raise(server, org, title="New user created", level=Level.LOW)
    client = signed_in(server)
    page = client.get("/alerts", params={"level": "high"})
    assert page.status_code == 200
    assert "SSH brute force" in page.text
    assert "New user created" not in page.text
    assert f"/alerts/{high}" in page.text
    # A filtered view streams too, from a stream filtered the same way by the server.
    assert 'data-live-alerts="/api/v1/alerts/stream?level=high"' in page.text
    assert 'data-live-alerts="/api/v1/alerts/stream"' in client.get("/alerts").text
    assert "data-live-alerts" not in client.get("/alerts", params={"offset": 50}).text
    bad = client.get("/alerts", params={"level": "apocalyptic"})
    assert bad.status_code == 422


def test_alert_detail_shows_the_escaped_event_and_matched_fields(server):  # noqa: F811
    alert_id = _raise(server, default_organisation(server))
    page = signed_in(server).get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    assert "203.0.113.7" in page.text
    assert "&lt;root&gt;" in page.text
    assert "<root>" not in page.text
    assert "credential-access" in page.text


def test_an_analyst_triages_and_comments_and_it_is_audited(server):  # noqa: F811
    org = default_organisation(server)
    alert_id = _raise(server, org)
    make_member(server, org, "ann", Role.ANALYST)
    client = signed_in(server, "ann", PASSWORD)
    token = csrf_of(client)
    done = client.post(
        f"/alerts/{alert_id}",
        data={"csrf_token": token, "status": "acknowledged", "assignee": "ann", "comment": "mine"},
    )
    assert done.status_code == 303
    page = client.get(f"/alerts/{alert_id}").text
    assert "acknowledged" in page
    assert "mine" in page
    bad = client.post(f"/alerts/{alert_id}", data={"csrf_token": token, "status": "solved"})
    assert bad.status_code == 422
    assert re.search(r"status", bad.text)
    no_csrf = client.post(f"/alerts/{alert_id}", data={"status": "new"})
    assert no_csrf.status_code == 403


def test_read_only_users_see_no_triage_form_and_cannot_post(server):  # noqa: F811
    org = default_organisation(server)
    alert_id = _raise(server, org)
    make_member(server, org, "rita", Role.READ_ONLY)
    client = signed_in(server, "rita", PASSWORD)
    page = client.get(f"/alerts/{alert_id}")
    assert page.status_code == 200
    assert 'name="status"' not in page.text
    refused = client.post(
        f"/alerts/{alert_id}", data={"csrf_token": csrf_of(client), "status": "new"}
    )
    assert refused.status_code == 403


def test_another_organisations_alert_is_not_found(server):  # noqa: F811
    with transaction(server.factory) as session:
        from puffin.auth import service as auth_service
        from puffin.auth.schemas import OrganisationCreate

        other = auth_service.create_organisation(
            session=session, org_in=OrganisationCreate(name="Other", slug="other")
        )
    alert_id = _raise(server, other.id)
    client = signed_in(server)
    assert client.get(f"/alerts/{alert_id}").status_code == 404
    assert client.get("/alerts/not-an-id").status_code == 404


def test_dashboard_charts_count_the_organisations_alerts(server):  # noqa: F811
    org = default_organisation(server)
    _raise(server, org)
    _raise(server, org, title="New user created", level=Level.LOW)
    page = signed_in(server).get("/")
    assert page.status_code == 200
    assert "Alerts over time: 2" in page.text
    assert page.text.count('class="bar"') >= 1
    assert "credential-access" in page.text
    assert "New user created" in page.text
    week = signed_in(server).get("/", params={"window": "7d"})
    assert "Alerts over time: 2" in week.text


def test_alerts_list_filters_by_agent_name(server):  # noqa: F811
    org = default_organisation(server)
    _raise(server, org, title="Root login on web", source_name="web-01")
    _raise(server, org, title="Root login on db", source_name="db-01")
    client = signed_in(server)
    page = client.get("/alerts", params={"agent": "WEB"})
    assert page.status_code == 200
    assert "Root login on web" in page.text
    assert "Root login on db" not in page.text
    assert "agent=WEB" in page.text  # the live stream is filtered by agent too
    assert client.get("/alerts", params={"agent": "x" * 201}).status_code == 422


def test_staged_alerts_are_left_out_unless_the_staged_filter_asks(server):  # noqa: F811
    org = default_organisation(server)
    _raise(server, org, title="Forwarded alert")
    _raise(server, org, title="Trial rule alert", staged=True)
    client = signed_in(server)
    default = client.get("/alerts").text
    assert "Forwarded alert" in default
    assert "Trial rule alert" not in default
    assert "data-staged-notice" not in default
    only = client.get("/alerts", params={"staged": "only"}).text
    assert "Trial rule alert" in only
    assert "Forwarded alert" not in only
    assert "data-staged-notice" in only
    assert "not forwarded" in only
    assert "staged=only" in only
    both = client.get("/alerts", params={"staged": "include"}).text
    assert "Trial rule alert" in both
    assert "Forwarded alert" in both
    assert client.get("/alerts", params={"staged": "maybe"}).status_code == 422
    dashboard = client.get("/").text
    assert "Alerts over time: 1" in dashboard
    assert "Trial rule alert" not in dashboard
