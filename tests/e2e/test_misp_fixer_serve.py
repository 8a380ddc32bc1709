"""A real `puffin misp-fixer serve` process: the fixer alone over HTTPS, fixing an event in
the fake MISP through the webhook, with its docs, health, metrics and recorded runs."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.test_server_https import _free_port, _stop
from tests.fakes.misp import HOST_ORG, FakeMisp

from puffin.auth import service as auth_service
from puffin.core.db import make_engine, make_session_factory, transaction
from puffin.core.pagination import PageParams
from puffin.core.tls import fingerprint_of_file, fingerprint_sha256, generate_self_signed
from puffin.intel import service as intel_service
from puffin.intel.schemas import RunFilter

pytestmark = pytest.mark.e2e

WEBHOOK = "/webhook/misp_event_fixer/"


@pytest.fixture
def misp() -> Iterator[FakeMisp]:
    with FakeMisp() as server:
        yield server


def _config(tmp_path: Path, misp: FakeMisp) -> Path:
    path = tmp_path / "puffin.toml"
    path.write_text(
        f'data_dir = "{tmp_path}"\n'
        "[misp_fixer]\n"
        f'misp_url = "{misp.url}"\n'
        f'misp_key = "{misp.key}"\n'
        "warninglists_include = []\n",
        encoding="utf-8",
    )
    return path


def _puffin(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUFFIN_")}
    return subprocess.run(
        [sys.executable, "-m", "puffin.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _serve(config: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUFFIN_")}
    return subprocess.Popen(
        [sys.executable, "-m", "puffin.cli.main", "misp-fixer", "serve", "-c", str(config),
         "--host", "127.0.0.1", "--port", str(port), *extra],
        env=env,
        cwd=config.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _wait(url: str, process: subprocess.Popen[str], verify: ssl.SSLContext | bool) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited: {process.communicate()[0]}")
        try:
            if httpx.get(f"{url}/healthz", verify=verify).is_success:
                return
        except (httpx.HTTPError, OSError):
            time.sleep(0.2)
    raise AssertionError("the fixer did not become ready")


def _context_for(cert: Path, process: subprocess.Popen[str]) -> ssl.SSLContext:
    deadline = time.monotonic() + 60
    while not cert.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no certificate generated: {_stop(process)}")
        time.sleep(0.1)
    return ssl.create_default_context(cafile=str(cert))


def _noisy_event(misp: FakeMisp) -> str:
    now = str(int(time.time()))
    attributes = [
        {"type": "ip-dst", "value": value, "to_ids": True, "timestamp": now}
        for value in ("8.8.8.8", "198.51.100.23")
    ]
    return misp.add_event(
        {"Event": {"info": "Standalone", "Orgc": dict(HOST_ORG), "Tag": [{"name": "tlp:white"}],
                   "Attribute": attributes}}
    )  # fmt: skip


def _recorded_runs(data_dir: Path) -> list[tuple[str, str]]:
    engine = make_engine(f"sqlite:///{data_dir / 'puffin.db'}")
    try:
        with transaction(make_session_factory(engine)) as session:
            org = auth_service.get_organisation_by_slug(session=session, slug="default")
            assert org is not None
            page = intel_service.list_runs(
                session=session,
                organisation_id=org.id,
                run_filter=RunFilter(),
                page=PageParams(limit=10),
            )
            return [(run.event_id, run.status.value) for run in page.items]
    finally:
        engine.dispose()


def test_serve_fixes_an_event_over_https_with_a_token_from_the_cli(tmp_path, misp):
    config = _config(tmp_path, misp)
    issued = _puffin("misp-fixer", "token", "--days", "2", "-c", str(config), cwd=tmp_path)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    event_id = _noisy_event(misp)
    port = _free_port()
    base = f"https://127.0.0.1:{port}"
    process = _serve(config, port)
    try:
        context = _context_for(tmp_path / "tls" / "server.crt", process)
        _wait(base, process, context)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # HTTPS only
        body = {"event_id": event_id, "event_attribute_count": "2"}

        refused = httpx.post(base + WEBHOOK, json=body, verify=context)
        forged = httpx.post(
            base + WEBHOOK, json=body, verify=context, headers={"Authorization": "Bearer x.y.z"}
        )
        assert (refused.status_code, forged.status_code) == (401, 401)
        assert "missing" in refused.json()["detail"]
        assert misp.writes == []

        answer = httpx.post(
            base + WEBHOOK,
            json=body,
            verify=context,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "done"
        assert answer.json()["false_positives"] == 1
        assert answer.headers["strict-transport-security"].startswith("max-age=")

        docs = httpx.get(f"{base}/docs", verify=context)
        redoc = httpx.get(f"{base}/redoc", verify=context)
        schema = httpx.get(f"{base}/openapi.json", verify=context).json()
        metrics = httpx.get(f"{base}/metrics", verify=context).text
        console = httpx.get(f"{base}/alerts", verify=context)
    finally:
        output = _stop(process)
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "SHA-256" in output
    event = misp.event(event_id)
    assert "tlp:clear" in [tag["name"] for tag in event["Tag"]]
    by_value = {a["value"]: a for a in event["Attribute"]}
    assert by_value["8.8.8.8"]["to_ids"] is False
    assert "false-positive" in [tag["name"] for tag in by_value["8.8.8.8"]["Tag"]]
    assert by_value["198.51.100.23"]["to_ids"] is True
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert redoc.status_code == 200
    assert "redoc" in redoc.text.lower()
    assert list(schema["paths"]) == [
        "/healthz",
        "/readyz",
        "/metrics",
        WEBHOOK,
    ]  # the fixer alone: no console, no platform API
    assert console.status_code == 404
    assert 'puffin_misp_fixer_runs_total{status="done"} 1.0' in metrics
    assert _recorded_runs(tmp_path) == [(event_id, "done")]


def test_serve_with_the_operators_certificate(tmp_path, misp):
    config = _config(tmp_path, misp)
    cert, key = tmp_path / "operator.crt", tmp_path / "operator.key"
    generate_self_signed(cert, key, hostnames=["127.0.0.1"])
    port = _free_port()
    process = _serve(config, port, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        context = ssl.create_default_context(cafile=str(cert))
        _wait(f"https://127.0.0.1:{port}", process, context)
        served = ssl.get_server_certificate(("127.0.0.1", port)).encode()
    finally:
        output = _stop(process)
    assert not (tmp_path / "tls" / "server.crt").exists()  # nothing generated
    assert fingerprint_sha256(served) == fingerprint_of_file(cert)
    assert fingerprint_of_file(cert) in output


def test_plain_http_only_when_asked(tmp_path, misp):
    config = _config(tmp_path, misp)
    port = _free_port()
    process = _serve(config, port, "--plain-http")
    try:
        _wait(f"http://127.0.0.1:{port}", process, False)
        refused = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK}", json={"event_id": "1"})
    finally:
        output = _stop(process)
    assert refused.status_code == 401
    assert "TLS is off" in output
    assert not (tmp_path / "tls").exists()
