"""The Rules pages: filtered list, detail with the YAML source, switches for admins, problems."""

from __future__ import annotations

import re

import pytest
from tests.integration.test_console_pages import (
    PASSWORD,
    csrf_of,
    default_organisation,
    make_member,
    server,  # noqa: F401 - fixture
    signed_in,
)
from tests.integration.test_rules_api import (
    BROKEN_YAML,
    LATE_ID,
    SSH_ID,
    SUDO_ID,
    WEB_ID,
    rule_text,
    write_pack,
)

from puffin.alert import service as alert_service
from puffin.alert.schemas import Detection, Level
from puffin.auth.schemas import Role
from puffin.core.db import transaction
from puffin.detection.registry import STATE_KEY, RuleRegistry

TRICKY_ID = "5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c04"


@pytest.fixture
def rules(server):  # noqa: F811
    """The console server with one pack of our rules (one with markup in its title)."""
    data_dir = server.app.state.puffin.settings.data_dir
    write_pack(
        data_dir,
        "ours",
        {
            "ssh.yml": rule_text(
                SSH_ID, "SSH password guessing", "high", "sshd", "Failed password"
            ),
            "sudo.yml": rule_text(SUDO_ID, "Sudo to root", "medium", "sudo", "COMMAND="),
            "web.yml": rule_text(WEB_ID, "Web path traversal", "low", "apache", "../"),
            "tricky.yml": rule_text(TRICKY_ID, "<b>Bold</b> title", "low", "cron", "CMD"),
            "broken.yml": BROKEN_YAML,
        },
    )
    registry = RuleRegistry(data_dir, include_builtin=False)
    server.app.state.puffin.extras[STATE_KEY] = registry
    registry.reload()
    return server


def test_the_rules_page_lists_filters_and_shows_broken_rules(rules):
    client = signed_in(rules)
    page = client.get("/rules")
    assert page.status_code == 200
    assert "SSH password guessing" in page.text
    assert "Sudo to root" in page.text
    assert page.text.index("SSH password guessing") < page.text.index("Sudo to root")
    assert "&lt;b&gt;Bold&lt;/b&gt; title" in page.text
    assert "<b>Bold</b>" not in page.text
    assert "Broken rules (1)" in page.text
    assert "broken.yml:4" in page.text
    assert "not valid YAML" in page.text
    filtered = client.get("/rules", params={"level": "medium"})
    assert "Sudo to root" in filtered.text
    assert "SSH password guessing" not in filtered.text
    by_text = client.get("/rules", params={"text": "traversal"}).text
    assert "Web path traversal" in by_text
    assert "Sudo to root" not in by_text
    assert client.get("/rules/problems").status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "level=apocalyptic",
        "enabled=perhaps",
        "offset=-5",
        "offset=99999999999999",
        "offset=abc",
        "text=" + "x" * 500,
        "pack=%00%ff",
        "text=%3Cscript%3E",
    ],
)
def test_odd_query_input_never_breaks_the_page(rules, query):
    client = signed_in(rules)
    response = client.get(f"/rules?{query}")
    assert response.status_code in (200, 400, 422), response.text
    assert "<script>" not in response.text.split("<main", 1)[1]
    assert client.get(f"/rules/problems?{query}").status_code in (200, 400)


def test_the_detail_page_shows_source_tags_false_positives_and_alerts(rules):
    with transaction(rules.factory) as session:
        alert_service.raise_alert(
            session=session,
            organisation_id=default_organisation(rules),
            detection=Detection(
                rule_id=SSH_ID, rule_title="SSH password guessing", level=Level.HIGH
            ),
        )
    page = signed_in(rules).get(f"/rules/{SSH_ID}")
    assert page.status_code == 200
    assert "full_log|contains: &#39;Failed password&#39;" in page.text
    assert "credential-access" in page.text
    assert "T1110.001" in page.text
    assert "Administrators at work" in page.text
    assert f'href="/alerts?rule_id={SSH_ID}">1</a>' in page.text
    assert signed_in(rules).get("/rules/no-such-rule").status_code == 404


def test_an_admin_disables_and_stages_a_rule_and_it_is_audited(rules):
    client = signed_in(rules)
    token = csrf_of(client)
    done = client.post(
        f"/rules/{SSH_ID}/settings",
        data={"csrf_token": token, "action": "disable", "next": "/rules?level=high"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == "/rules?level=high"
    staged = client.post(f"/rules/{SSH_ID}/settings", data={"csrf_token": token, "action": "stage"})
    assert staged.headers["location"] == f"/rules/{SSH_ID}"
    row = _row(client.get("/rules").text, SSH_ID)
    assert "disabled" in row
    assert "staged" in row
    assert 'value="enable"' in row
    assert 'value="promote"' in row
    assert "disabled" in _row(client.get("/rules", params={"enabled": "false"}).text, SSH_ID)
    assert SUDO_ID not in client.get("/rules", params={"enabled": "false"}).text
    trail = client.get("/admin/audit", params={"object_type": "rule"}).text
    assert SSH_ID in trail
    offsite = client.post(
        f"/rules/{SSH_ID}/settings",
        data={"csrf_token": token, "action": "enable", "next": "https://evil.example/"},
    )
    assert offsite.headers["location"] == f"/rules/{SSH_ID}"


def test_switches_need_an_admin_a_csrf_token_and_a_known_action(rules):
    make_member(rules, default_organisation(rules), "ann", Role.ANALYST)
    analyst = signed_in(rules, "ann", PASSWORD)
    assert 'value="disable"' not in analyst.get("/rules").text
    refused = analyst.post(
        f"/rules/{SSH_ID}/settings", data={"csrf_token": csrf_of(analyst), "action": "disable"}
    )
    assert refused.status_code == 403
    admin = signed_in(rules)
    no_token = admin.post(f"/rules/{SSH_ID}/settings", data={"action": "disable"})
    assert no_token.status_code == 403
    token = csrf_of(admin)
    unknown = admin.post(f"/rules/{SSH_ID}/settings", data={"csrf_token": token, "action": "x"})
    assert unknown.status_code == 422
    missing = admin.post("/rules/nope/settings", data={"csrf_token": token, "action": "disable"})
    assert missing.status_code == 404
    assert 'badge-ok">enabled<' in _row(admin.get("/rules").text, SSH_ID)


def test_a_site_admin_reloads_the_rules_from_the_page(rules):
    data_dir = rules.app.state.puffin.settings.data_dir
    write_pack(data_dir, "late", {"late.yml": rule_text(LATE_ID, "Late rule", "low", "sshd", "z")})
    make_member(rules, default_organisation(rules), "olga", Role.ADMIN)
    org_admin = signed_in(rules, "olga", PASSWORD)
    assert "Reload rules" not in org_admin.get("/rules").text
    refused = org_admin.post("/rules/reload", data={"csrf_token": csrf_of(org_admin)})
    assert refused.status_code == 403
    site_admin = signed_in(rules)
    done = site_admin.post("/rules/reload", data={"csrf_token": csrf_of(site_admin)})
    assert done.status_code == 303
    page = site_admin.get("/rules").text
    assert "Late rule" in page
    assert "Rules reloaded: 5 rules, 1 broken." in page


def _row(page: str, rule_id: str) -> str:
    match = re.search(rf'<tr data-rule-id="{rule_id}">(.*?)</tr>', page, re.S)
    assert match, f"no row for {rule_id}"
    return match.group(1)
