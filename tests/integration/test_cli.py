"""The `puffin` command: organisations, users, API keys, server info, and clear errors."""

from __future__ import annotations

import re
import subprocess
import sys

from fastapi.testclient import TestClient
from tests.conftest import start_puffin
from typer.testing import CliRunner

from puffin.cli.main import build_app
from puffin.core.tls import ensure_certificate, fingerprint_of_file

runner = CliRunner()


def puffin(*args: str):
    """Run a puffin command in-process and return the result."""
    return runner.invoke(build_app(list(args)), list(args))


def test_org_user_and_apikey_commands_work_together(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    first = puffin("org", "create", "Acme Corp", "--slug", "acme", *data)
    assert first.exit_code == 0, first.output
    assert "first site admin" in first.output  # a new database announces its admin once
    listed = puffin("org", "list", *data)
    assert "acme" in listed.output
    assert "first site admin" not in listed.output
    user = puffin("user", "create", "bob", "--org", "acme", "--role", "read-only", *data)
    assert user.exit_code == 0, user.output
    users = puffin("user", "list", "--org", "acme", *data)
    assert "bob" in users.output
    assert "read-only" in users.output
    created = puffin("apikey", "create", "--user", "bob", "--org", "acme", "--name", "ci", *data)
    assert created.exit_code == 0, created.output
    key = re.search(r"pfn_\S+", created.output).group(0)
    app, _ = start_puffin(tmp_path)
    with TestClient(app) as client:
        me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()
        assert me["user"]["username"] == "bob"
        assert me["organisation"]["slug"] == "acme"
        trail = client.get(
            "/api/v1/audit", headers={"Authorization": f"Bearer {key}"}
        )  # read-only users may not read the trail
        assert trail.status_code == 403


def test_cli_changes_are_audited_as_the_cli(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    puffin("user", "create", "carol", *data)
    app, _ = start_puffin(tmp_path)
    from puffin.audit import service as audit_service
    from puffin.audit.schemas import AuditFilter
    from puffin.core.db import transaction
    from puffin.core.pagination import PageParams

    with TestClient(app), transaction(app.state.puffin.session_factory) as session:
        page = audit_service.list_entries(
            session=session,
            organisation_id=None,
            audit_filter=AuditFilter(actor="cli"),
            page=PageParams(),
        )
    assert [e.summary for e in page.items] == ["created user carol as analyst"]


def test_bad_arguments_exit_2_and_domain_errors_exit_1(tmp_path):
    data = ["--data-dir", str(tmp_path)]
    bad_role = puffin("user", "create", "dave", "--role", "boss", *data)
    assert bad_role.exit_code == 2
    assert "role" in bad_role.output
    puffin("user", "create", "erin", *data)
    taken = puffin("user", "create", "erin", *data)
    assert taken.exit_code == 1
    assert "taken" in taken.output
    no_org = puffin("user", "list", "--org", "nowhere", *data)
    assert no_org.exit_code == 1
    assert "puffin org list" in no_org.output
    missing_config = puffin("server", "info", "--config", str(tmp_path / "absent.toml"))
    assert missing_config.exit_code == 2
    unknown = puffin("frobnicate")
    assert unknown.exit_code == 2


def test_settings_errors_name_the_setting(tmp_path):
    config = tmp_path / "puffin.toml"
    config.write_text('port = "eighty"\n')
    result = puffin("server", "info", "--config", str(config))
    assert result.exit_code == 2
    assert "port" in result.output


def test_server_info_prints_the_certificate_fingerprint(tmp_path):
    paths = ensure_certificate(tmp_path, None, None)
    result = puffin("server", "info", "--data-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    compact = result.output.replace("\n", "").replace(" ", "")
    assert fingerprint_of_file(paths.cert_file).replace(" ", "") in compact


def test_help_works_for_every_group():
    for args in (
        ["--help"],
        ["server", "--help"],
        ["db", "--help"],
        ["user", "--help"],
        ["org", "--help"],
        ["apikey", "--help"],
        ["demo", "--help"],
    ):
        result = subprocess.run(
            [sys.executable, "-m", "puffin.cli.main", *args], capture_output=True, text=True
        )
        assert result.returncode == 0, (args, result.stderr)
        assert "Usage" in result.stdout
