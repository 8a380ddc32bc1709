"""The webhook through the Puffin app, with the fake MISP driven by the real PyMISP."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from tests.conftest import Backend, start_puffin
from tests.fakes.misp import HOST_ORG, FakeMisp, generate_event

from puffin.auth import credentials
from puffin.auth import service as auth_service
from puffin.auth.schemas import ApiKeyCreate, Principal, Role, UserCreate
from puffin.core.clock import utcnow
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.intel.misp_fixer import tokens
from puffin.intel.misp_fixer.settings import FixerSettings
from puffin.misp_fixer_app import create_misp_fixer_app

SECRET = "s" * 40
STATIC = "static-token-for-the-misp-workflow-0001"
WEBHOOK = "/webhook/misp_event_fixer/"


class Server:
    """The Puffin app with the fixer pointed at the fake MISP, and a reader's API key."""

    def __init__(self, client: TestClient, reader_key: str) -> None:
        self.client, self.reader_key = client, reader_key

    def hook(self, body: Any, token: str | None = STATIC, path: str = WEBHOOK) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.client.post(path, json=body, headers=headers)

    def api(self, url: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.reader_key}"}
        response = self.client.get(url, headers=headers, params=params)
        assert response.status_code == 200, response.text
        return response.json()


def fixer_settings(misp: FakeMisp, **overrides: Any) -> dict[str, Any]:
    return {
        "misp_url": misp.url,
        "misp_key": misp.key,
        "warninglists_include": [],
        "jwt_secret": SECRET,
        "static_token": STATIC,
        **overrides,
    }


def reader_key(client: TestClient) -> str:
    """Return an API key of a read-only member of the default organisation."""
    factory = client.app.state.puffin.session_factory  # type: ignore[attr-defined]
    with transaction(factory) as session:
        org = auth_service.get_organisation_by_slug(session=session, slug="default")
        assert org is not None
        user = auth_service.create_user(
            session=session,
            organisation_id=org.id,
            user_in=UserCreate(
                username="reader", password="correct horse battery", role=Role.READ_ONLY
            ),
        )
        principal = Principal(
            user_id=user.id,
            username="reader",
            is_site_admin=False,
            organisation_id=org.id,
            role=Role.READ_ONLY,
            via="test",
        )
        return credentials.create_api_key(
            session=session, principal=principal, key_in=ApiKeyCreate(name="t")
        ).key


@pytest.fixture
def misp() -> Iterator[FakeMisp]:
    with FakeMisp() as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, misp: FakeMisp, backend: Backend) -> Iterator[Server]:
    app, _ = start_puffin(tmp_path, misp_fixer=fixer_settings(misp, page_size=100))
    with TestClient(app) as client:
        dialect = app.state.puffin.engine.dialect.name
        assert dialect == {"sqlite": "sqlite", "postgres": "postgresql"}[backend.name]
        yield Server(client, reader_key(client))


def noisy_event() -> dict[str, Any]:
    """An event with one listed false positive, one real indicator and a tlp:white tag."""
    now = str(int(time.time()))
    attributes = [
        {"uuid": str(uuid.uuid4()), "type": "ip-dst", "category": "Network activity",
         "value": value, "to_ids": True, "disable_correlation": False, "timestamp": now}
        for value in ("8.8.8.8", "198.51.100.23")
    ]  # fmt: skip
    return {
        "Event": {
            "info": "Phishing wave",
            "Orgc": dict(HOST_ORG),
            "Org": dict(HOST_ORG),
            "Tag": [{"name": "tlp:white"}],
            "Attribute": attributes,
        }
    }


def test_missing_bad_and_expired_tokens_are_refused_with_the_reason(server, misp):
    event_id = misp.add_event(noisy_event())
    body = {"event_id": event_id}
    expired = tokens.issue(secret=SECRET, days=1, now=utcnow() - timedelta(days=2))
    forged = tokens.issue(secret="f" * 40, days=1)
    for token, reason in ((None, "missing"), ("nope", "invalid"), (forged, "invalid"),
                          (expired, "expired")):  # fmt: skip
        refused = server.hook(body, token=token)
        assert refused.status_code == 401, token
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert reason in refused.json()["detail"]
    assert misp.writes == []
    assert server.api("/api/v1/misp-fixer/runs")["total"] == 0


def test_a_valid_jwt_fixes_the_event_and_the_run_is_recorded(server, misp):
    event_id = misp.add_event(noisy_event())
    token = tokens.issue(secret=SECRET, days=30)

    answer = server.hook({"event_id": event_id, "event_attribute_count": "2"}, token=token)

    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert summary["status"] == "done"
    assert summary["partial"] is False
    assert summary["false_positives"] == 1
    assert summary["changes_by_kind"]["event_tag"] == 1
    assert "tlp:clear" in [t["name"] for t in misp.event(event_id)["Tag"]]
    runs = server.api("/api/v1/misp-fixer/runs")
    assert runs["total"] == 1
    assert runs["items"][0]["id"] == summary["run_id"]
    detail = server.api(f"/api/v1/misp-fixer/runs/{summary['run_id']}")
    assert [(d["value"], d["source"]) for d in detail["decisions"]] == [("8.8.8.8", "list")]
    assert (detail["event_id"], detail["errors"]) == (event_id, [])
    assert detail["duration_seconds"] == summary["duration_seconds"] > 0
    assert datetime.fromisoformat(detail["finished_at"]) >= datetime.fromisoformat(
        detail["started_at"]
    )
    assert {"kind": "event_tag", "new_value": "tlp:clear"}.items() <= detail["changes"][-1].items()


def test_the_path_without_the_trailing_slash_and_a_second_run_changing_nothing(server, misp):
    event_id = misp.add_event(noisy_event())
    first = server.hook({"event_id": event_id}, path=WEBHOOK.rstrip("/"))
    assert first.status_code == 200, first.text
    assert first.json()["changes"] > 0
    writes = len(misp.writes)

    second = server.hook({"event_id": event_id, "event_uuid": misp.event(event_id)["uuid"]})

    assert second.status_code == 200
    assert second.json()["changes"] == 0
    assert len(misp.writes) == writes


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({}, "event_id"),
        ({"event_id": "1; DROP TABLE"}, "event_id"),
        ({"event_id": "1", "event_attribute_count": "many"}, "event_attribute_count"),
        ({"event_id": "1", "event_uuid": "not-a-uuid"}, "event_uuid"),
    ],
)
def test_a_malformed_body_is_422_with_the_reason(server, misp, body, where):
    refused = server.hook(body)
    assert refused.status_code == 422
    assert where in refused.json()["detail"]
    assert misp.writes == []


def test_empty_strings_from_misp_templating_count_as_absent(server, misp):
    event_id = misp.add_event(noisy_event())
    event_uuid = misp.event(event_id)["uuid"]

    by_id = server.hook({"event_id": event_id, "event_uuid": "", "event_attribute_count": ""})
    by_uuid = server.hook({"event_id": "", "event_uuid": event_uuid, "event_attribute_count": " "})

    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["event_id"] == event_id
    assert by_id.json()["changes"] > 0
    assert by_uuid.status_code == 200, by_uuid.text
    assert by_uuid.json()["event_uuid"] == event_uuid
    assert by_uuid.json()["changes"] == 0  # the same event, fixed by the first call


@pytest.mark.parametrize(
    "body",
    [
        {"event_id": "", "event_uuid": ""},
        {"event_id": " ", "event_uuid": "", "event_attribute_count": "3"},
        {"event_attribute_count": ""},
    ],
)
def test_no_usable_event_id_nor_uuid_is_422_saying_so(server, misp, body):
    refused = server.hook(body)
    assert refused.status_code == 422
    detail = refused.json()["detail"]
    assert "event_id or event_uuid is required" in detail
    assert "missing or empty" in detail
    assert misp.writes == []


def test_an_unusable_opentip_cache_is_503_naming_the_setting_and_the_path(
    tmp_path: Path, misp: FakeMisp, backend: Backend
) -> None:
    in_the_way = tmp_path / "not-a-directory"
    in_the_way.write_text("a file where the cache's directory should be", encoding="utf-8")
    cache = in_the_way / "opentip.db"
    settings = fixer_settings(misp, opentip_api_key="k" * 32, opentip_cache_file=str(cache))
    app, _ = start_puffin(tmp_path / "data", misp_fixer=settings)
    event_id = misp.add_event(noisy_event())
    with TestClient(app) as client:
        server = Server(client, reader_key(client))
        for _ in range(2):  # the fixer is not half-built by the first attempt
            refused = server.hook({"event_id": event_id})
            assert refused.status_code == 503, refused.text
            detail = refused.json()["detail"]
            assert f"misp_fixer.opentip_cache_file {cache}" in detail
            assert "cannot open the OpenTIP cache" in detail
    assert misp.writes == []


def test_the_standalone_service_starts_and_answers_503_when_the_cache_is_unusable(
    tmp_path: Path, misp: FakeMisp, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache-dir"
    cache.mkdir()
    fixer = FixerSettings.model_validate(
        fixer_settings(misp, opentip_api_key="k" * 32, opentip_cache_file=str(cache))
    )
    settings = Settings(data_dir=tmp_path / "data", environment="test", tls=False)
    with (
        caplog.at_level(logging.ERROR),
        TestClient(create_misp_fixer_app(settings, fixer)) as client,
    ):
        started = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
        refused = client.post(
            WEBHOOK, json={"event_id": "1"}, headers={"Authorization": f"Bearer {STATIC}"}
        )
        alive = client.get("/healthz")
    assert started
    assert f"misp_fixer.opentip_cache_file {cache}" in started[0]
    assert refused.status_code == 503
    assert f"misp_fixer.opentip_cache_file {cache}: cannot open" in refused.json()["detail"]
    assert alive.status_code == 200
    assert misp.writes == []


def test_an_unknown_event_is_404_and_recorded_as_failed(server):
    refused = server.hook({"event_id": "999"})
    assert refused.status_code == 404
    assert "999" in refused.json()["detail"]
    runs = server.api("/api/v1/misp-fixer/runs", status="failed")
    assert [run["event_id"] for run in runs["items"]] == ["999"]


def test_misp_down_is_502_with_the_reason_and_recorded(server, misp):
    event_id = misp.add_event(noisy_event())
    misp.stop()
    refused = server.hook({"event_id": event_id})
    assert refused.status_code == 502
    assert "unreachable" in refused.json()["detail"]
    assert server.api("/api/v1/misp-fixer/runs")["items"][0]["status"] == "failed"


def test_misp_down_mid_run_is_502_partial_and_a_rerun_finishes(server, misp):
    event_id = misp.add_event(generate_event(400, seed=3))
    misp.go_down_after(2, writes_only=True)

    broken = server.hook({"event_id": event_id})

    assert broken.status_code == 502
    assert broken.json()["run"]["partial"] is True
    misp.restart()
    finished = server.hook({"event_id": event_id})
    assert finished.status_code == 200
    statuses = [run["status"] for run in server.api("/api/v1/misp-fixer/runs")["items"]]
    assert statuses == ["done", "partial"]


def test_runs_changes_and_lookups_are_counted_in_the_metrics(server, misp):
    server.hook({"event_id": misp.add_event(noisy_event())})
    server.hook({"event_id": "424242"})
    metrics = server.client.get("/metrics").text
    assert 'puffin_misp_fixer_runs_total{status="done"} 1.0' in metrics
    assert 'puffin_misp_fixer_runs_total{status="failed"} 1.0' in metrics
    assert 'puffin_misp_fixer_changes_total{kind="event_tag"} 1.0' in metrics
    assert 'puffin_misp_fixer_lookups_total{source="list"} 1.0' in metrics


def test_without_misp_settings_the_webhook_says_what_to_set(tmp_path):
    app, _ = start_puffin(tmp_path, misp_fixer={"static_token": STATIC})
    with TestClient(app) as client:
        answer = client.post(
            WEBHOOK, json={"event_id": "1"}, headers={"Authorization": f"Bearer {STATIC}"}
        )
        assert answer.status_code == 503
        assert "misp_url" in answer.json()["detail"]


def test_the_runs_api_reads_times_without_an_offset_as_utc_and_refuses_bad_ones(server, misp):
    server.hook({"event_id": misp.add_event(noisy_event())})
    assert server.api("/api/v1/misp-fixer/runs", since="2000-01-01T00:00:00")["total"] == 1
    assert server.api("/api/v1/misp-fixer/runs", until="2000-01-01T00:00")["total"] == 0
    headers = {"Authorization": f"Bearer {server.reader_key}"}
    refused = server.client.get(
        "/api/v1/misp-fixer/runs", params={"since": "yesterday"}, headers=headers
    )
    assert refused.status_code == 422
    assert "since" in refused.json()["detail"]
