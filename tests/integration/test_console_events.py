"""The Events page: search by text, agent and fields, a histogram, and the detail page."""

from __future__ import annotations

import uuid
from datetime import timedelta

from tests.integration.test_console_pages import (
    default_organisation,
    server,  # noqa: F401 - fixture
    signed_in,
)

from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.endpoint import service as endpoint_service
from puffin.endpoint.schemas import EnrollmentRequest, EnrollmentTokenCreate
from puffin.ingest.store import NewEvent


def _seed(server):  # noqa: F811
    org = default_organisation(server)
    with transaction(server.factory) as session:
        token = endpoint_service.create_enrollment_token(
            session=session,
            organisation_id=org,
            token_in=EnrollmentTokenCreate(),
            server_fingerprint=None,
        )
        agent = endpoint_service.enroll(
            session=session, request=EnrollmentRequest(token=token.token, name="web-01"), ip=None
        )
    store = server.app.state.puffin.extras["event_store"]
    now = utcnow()
    store.append(
        organisation_id=org,
        source_id=agent.agent_id,
        events=[
            NewEvent(
                data={"program": "sshd", "user": "root"},
                full_log="sshd: Failed password for <root>",
                event_time=now - timedelta(minutes=5),
            ),
            NewEvent(
                data={"program": "sudo", "user": "bob"},
                full_log="sudo: bob : COMMAND=/bin/ls",
                event_time=now - timedelta(minutes=3),
            ),
        ],
    )
    store.append(
        organisation_id=uuid.uuid4(),
        source_id=uuid.uuid4(),
        events=[NewEvent(data={}, full_log="elsewhere")],
    )
    return agent.agent_id


def test_events_page_searches_and_draws_the_volume(server):  # noqa: F811
    agent_id = _seed(server)
    client = signed_in(server)
    page = client.get("/events")
    assert page.status_code == 200
    assert "Volume: 2 events" in page.text
    assert page.text.count('class="bar"') >= 1
    assert "elsewhere" not in page.text
    assert "&lt;root&gt;" in page.text
    text = client.get("/events", params={"text": "failed password"}).text
    assert "Volume: 1 event<" in text
    fields = client.get("/events", params={"fields": "program=sudo"}).text
    assert "COMMAND=/bin/ls" in fields
    assert "Failed password" not in fields
    by_agent = client.get("/events", params={"source_id": str(agent_id)}).text
    assert "Volume: 2 events" in by_agent


def test_bad_searches_say_what_is_wrong(server):  # noqa: F811
    client = signed_in(server)
    bad_fields = client.get("/events", params={"fields": "no equals sign"})
    assert bad_fields.status_code == 422
    assert "name=value" in bad_fields.text
    bad_time = client.get("/events", params={"since": "yesterday-ish"})
    assert bad_time.status_code == 422
    bad_agent = client.get("/events", params={"source_id": str(uuid.uuid4())})
    assert bad_agent.status_code == 422


def test_event_detail_and_other_organisations_events(server):  # noqa: F811
    _seed(server)
    client = signed_in(server)
    store = server.app.state.puffin.extras["event_store"]
    own = store.read_after(0)[0].id
    foreign = store.last_id()
    assert client.get(f"/events/{own}").status_code == 200
    assert "Failed password" in client.get(f"/events/{own}").text
    assert client.get(f"/events/{foreign}").status_code == 404
    assert client.get("/events/0").status_code == 404
