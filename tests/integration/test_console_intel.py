"""The Intel → MISP fixer page: the organisation's runs with filters, and one run's detail."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.fakes.misp import HOST_ORG, FakeMisp
from tests.integration.test_console_pages import (
    PASSWORD,
    Server,
    default_organisation,
    make_member,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.app import create_app
from puffin.auth import service as auth_service
from puffin.auth.schemas import OrganisationCreate, Role
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.intel import service as intel_service
from puffin.intel.schemas import ChangeRead, DecisionRead, RunCreate, RunStatus, RunTrigger

STATIC = "static-token-for-the-misp-workflow-0001"
RUNS = "/intel/misp-fixer"


def record(server: Server, organisation_id: uuid.UUID, **fields: Any) -> uuid.UUID:  # noqa: F811
    """Store one run through the intel service and return its id."""
    started = fields.pop("started_at", utcnow())
    values: dict[str, Any] = {
        "trigger": RunTrigger.WEBHOOK,
        "event_id": "42",
        "status": RunStatus.DONE,
        "started_at": started,
        "finished_at": started + timedelta(seconds=1),
        "duration_seconds": 1.0,
        **fields,
    }
    with transaction(server.factory) as session:
        run = intel_service.record_run(
            session=session, organisation_id=organisation_id, run_in=RunCreate(**values)
        )
    return run.id


def other_organisation(server: Server) -> uuid.UUID:  # noqa: F811
    with transaction(server.factory) as session:
        org = auth_service.create_organisation(
            session=session, org_in=OrganisationCreate(name="Other Corp", slug="other")
        )
    return org.id


def run_links(html: str) -> list[str]:
    return re.findall(r'href="/intel/misp-fixer/runs/([0-9a-f-]{36})"', html)


def decision(value: str, source: str = "list") -> DecisionRead:
    return DecisionRead(
        attribute_uuid=str(uuid.uuid4()),
        type="ip-dst",
        value=value,
        source=source,
        detail=value,
        action="flag",
    )


def test_the_intel_entry_of_the_navigation_opens_the_runs(server):  # noqa: F811
    client = signed_in(server)
    any_page = client.get("/admin/audit").text
    intel = re.search(r'<a href="([^"]+)"[^>]*>\s*(?:<[^>]+>\s*)*Intel', any_page)
    assert intel is not None
    answer = client.get(intel.group(1), follow_redirects=True)
    assert answer.status_code == 200
    assert str(answer.url).endswith(RUNS)
    assert "Intel · MISP fixer" in answer.text
    assert 'aria-current="page"' in answer.text
    assert "coming in a later release" not in answer.text
    assert "No runs match these filters." in answer.text


def test_signed_out_visitors_are_sent_to_the_login(server):  # noqa: F811
    answer = server.client().get(RUNS)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=/intel/misp-fixer")


def test_only_the_signed_in_organisations_runs_are_listed_and_reachable(server):  # noqa: F811
    own = record(server, default_organisation(server), event_id="42", event_info="Ours")
    other_org = other_organisation(server)
    theirs = record(server, other_org, event_id="77", event_info="Theirs")
    client = signed_in(server)

    page = client.get(RUNS)

    assert page.status_code == 200
    assert run_links(page.text) == [str(own)]
    assert "Theirs" not in page.text
    assert client.get(f"{RUNS}/runs/{own}").status_code == 200
    foreign = client.get(f"{RUNS}/runs/{theirs}")
    assert foreign.status_code == 404
    assert foreign.headers["content-type"].startswith("text/html")
    assert "Theirs" not in foreign.text
    assert client.get(f"{RUNS}/runs/{uuid.uuid4()}").status_code == 404
    assert client.get(f"{RUNS}/runs/not-a-uuid").status_code == 404
    by_event = client.get(RUNS, params={"event": "77"})
    assert run_links(by_event.text) == []

    make_member(server, other_org, "reader-other", Role.READ_ONLY)
    reader = signed_in(server, "reader-other", PASSWORD)
    assert run_links(reader.get(RUNS).text) == [str(theirs)]
    assert reader.get(f"{RUNS}/runs/{own}").status_code == 404


def test_filters_by_status_event_time_and_false_positives(server):  # noqa: F811
    org = default_organisation(server)
    day = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    done = record(server, org, event_id="1", started_at=day, decisions=[decision("8.8.8.8")])
    partial = record(
        server,
        org,
        event_id="2",
        event_uuid="5a3c2fcd-8328-4c4b-9a5e-0c2a8ef1b6a1",
        status=RunStatus.PARTIAL,
        started_at=day + timedelta(days=1),
        errors=["MISP unreachable while editing event 2"],
    )
    skipped = record(
        server, org, event_id="3", status=RunStatus.SKIPPED, started_at=day + timedelta(days=2)
    )
    client = signed_in(server)

    def listed(**params: str) -> list[str]:
        answer = client.get(RUNS, params=params)
        assert answer.status_code == 200, answer.text
        return run_links(answer.text)

    assert listed() == [str(skipped), str(partial), str(done)]  # newest first
    assert listed(status="partial") == [str(partial)]
    assert listed(event="2") == [str(partial)]
    assert listed(event="5a3c2fcd-8328-4c4b-9a5e-0c2a8ef1b6a1") == [str(partial)]
    assert listed(with_false_positives="true") == [str(done)]
    assert listed(since="2026-11-04T00:00:00") == [str(skipped), str(partial)]
    assert listed(since="2026-11-04T00:00", until="2026-11-05T00:00") == [str(partial)]
    assert listed(status="done", event="2") == []
    kept = client.get(RUNS, params={"status": "partial", "event": "2"}).text
    assert '<option value="partial" selected>' in kept
    assert 'value="2"' in kept


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "bogus"}, "Choose one of the listed values."),
        ({"since": "yesterday"}, "Enter a date and time."),
        ({"until": "2026-13-45T99:00"}, "Enter a date and time."),
        ({"with_false_positives": "perhaps"}, "valid boolean"),
        ({"event": "9" * 65}, "at most 64 characters"),
    ],
)
def test_bad_filter_values_are_422_with_a_message(server, params, message):  # noqa: F811
    record(server, default_organisation(server))
    answer = signed_in(server).get(RUNS, params=params)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("text/html")
    assert message in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert run_links(answer.text) == []


def test_pages_of_fifty_keep_the_filters(server):  # noqa: F811
    org = default_organisation(server)
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for index in range(55):
        record(server, org, event_id=str(index), started_at=start + timedelta(minutes=index))
    client = signed_in(server)
    first = client.get(RUNS, params={"status": "done"}).text
    assert len(run_links(first)) == 50
    assert "1–50 of 55" in first
    assert "status=done" in first
    second = client.get(RUNS, params={"status": "done", "offset": "50"}).text
    assert len(run_links(second)) == 5
    assert set(run_links(first)).isdisjoint(run_links(second))


def test_run_detail_shows_decisions_changes_and_errors_escaped(server):  # noqa: F811
    org = default_organisation(server)
    attribute = str(uuid.uuid4())
    run_id = record(
        server,
        org,
        event_info="<script>alert('info')</script>",
        status=RunStatus.PARTIAL,
        attributes=3,
        misp_write_calls=2,
        decisions=[
            decision("8.8.8.8"),
            DecisionRead(
                attribute_uuid=attribute,
                type="domain",
                value="<b>cdn.example</b>",
                source="warninglist",
                detail="List of known CDN domains",
                action="flag",
            ),
        ],
        changes=[
            ChangeRead(
                kind="to_ids",
                target=attribute,
                new_value="false",
                attribute_type="domain",
                attribute_value="<b>cdn.example</b>",
            ),
            ChangeRead(kind="tag", target=attribute, new_value="false-positive"),
            ChangeRead(kind="tag", target=attribute, new_value="false-positive"),
        ],
        errors=["MISP unreachable: <img src=x onerror=alert(1)>"],
    )
    page = signed_in(server).get(f"{RUNS}/runs/{run_id}")

    assert page.status_code == 200
    html = page.text
    assert "<script>alert('info')</script>" not in html
    assert "&lt;script&gt;" in html
    assert "<b>cdn.example</b>" not in html
    assert "&lt;b&gt;cdn.example&lt;/b&gt;" in html
    assert "<img src=x" not in html
    assert "MISP unreachable: &lt;img" in html
    assert "8.8.8.8" in html
    assert "warninglist" in html
    assert "List of known CDN domains" in html
    assert "Changes applied" in html
    assert "tag × 2" in html
    assert "to_ids × 1" in html
    assert html.count(attribute) >= 3
    assert "badge-warn" in html  # partial


def test_a_dry_run_shows_its_plan_as_planned(server):  # noqa: F811
    run_id = record(
        server,
        default_organisation(server),
        dry_run=True,
        changes=[ChangeRead(kind="event_tag", target="e", new_value="tlp:clear")],
    )
    html = signed_in(server).get(f"{RUNS}/runs/{run_id}").text
    assert "Changes planned" in html
    assert "dry run: changes planned, none applied" in html
    assert "tlp:clear" in html


def test_a_long_run_shows_the_first_rows_and_says_where_the_rest_are(server):  # noqa: F811
    changes = [ChangeRead(kind="to_ids", target=f"a{i}", new_value="true") for i in range(1200)]
    run_id = record(server, default_organisation(server), changes=changes)
    html = signed_in(server).get(f"{RUNS}/runs/{run_id}").text
    assert "to_ids × 1200" in html
    assert "The first 500 of 1200" in html
    assert "<code>a499</code>" in html
    assert "<code>a500</code>" not in html


# --- a run made by the real webhook against the fake MISP ------------------------------


@pytest.fixture
def fixing_server(tmp_path) -> Iterator[tuple[Server, FakeMisp]]:
    with FakeMisp() as misp:
        announced: list[str] = []
        settings = Settings(
            data_dir=tmp_path,
            environment="test",
            tls=True,
            misp_fixer={
                "misp_url": misp.url,
                "misp_key": misp.key,
                "warninglists_include": [],
                "static_token": STATIC,
            },
        )
        app = create_app(settings, announce=announced.append)
        with TestClient(app):
            password = announced[0].split("password: ")[1].strip()
            yield Server(app=app, admin_password=password), misp


def test_a_webhook_run_appears_with_what_it_decided_and_changed(fixing_server):
    server, misp = fixing_server  # noqa: F811
    now = str(int(time.time()))
    attribute = {"type": "ip-dst", "value": "8.8.8.8", "to_ids": True, "timestamp": now}
    event = {"info": "Phishing <wave>", "Orgc": dict(HOST_ORG), "Attribute": [attribute]}
    event_id = misp.add_event({"Event": {**event, "Tag": [{"name": "tlp:white"}]}})
    client = server.client()
    hooked = client.post(
        "/webhook/misp_event_fixer/",
        json={"event_id": event_id},
        headers={"Authorization": f"Bearer {STATIC}"},
    )
    assert hooked.status_code == 200, hooked.text
    signed = signed_in(server)

    listing = signed.get(RUNS).text
    assert run_links(listing) == [hooked.json()["run_id"]]
    assert "Phishing &lt;wave&gt;" in listing
    detail = signed.get(f"{RUNS}/runs/{hooked.json()['run_id']}").text
    assert "8.8.8.8" in detail
    assert "tlp:clear" in detail
    assert "false-positive" in detail
    assert "sighting" in detail
