"""The Rules API: the server's rules with each organisation's switches, problems, audit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from puffin.auth.schemas import Role
from puffin.detection.engine.ruleset import RuleErrors
from puffin.detection.registry import STATE_KEY, RuleRegistry, builtin_pack_path, rule_registry

SSH_ID = "5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c01"
SUDO_ID = "5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c02"
WEB_ID = "5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c03"
LATE_ID = "5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c05"


def rule_text(rule_id: str, title: str, level: str, service: str, needle: str) -> str:
    """Return a small Sigma rule of our own."""
    return textwrap.dedent(
        f"""\
        title: {title}
        id: {rule_id}
        status: test
        description: Test rule about {service}.
        level: {level}
        logsource:
          product: linux
          service: {service}
        detection:
          selection:
            full_log|contains: '{needle}'
          condition: selection
        falsepositives:
          - Administrators at work
        tags:
          - attack.credential_access
          - attack.t1110.001
        """
    )


# Line 4 is not valid YAML (a second colon in a plain value).
BROKEN_YAML = "title: Broken\nid: 5a0f4c51-7d1e-4c55-9b1a-2f7f0b6a1c09\nstatus: test\n" + (
    "level: high: no\n"
)


def write_pack(data_dir: Path, pack: str, files: dict[str, str]) -> Path:
    """Write rule files into <data_dir>/rules/<pack>/."""
    root = data_dir / "rules" / pack
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.fixture
def loaded(puffin):
    """A server with two packs: one broken file and one id in both packs."""
    data_dir = puffin.state.settings.data_dir
    write_pack(
        data_dir,
        "alpha",
        {
            "ssh.yml": rule_text(
                SSH_ID, "SSH password guessing", "high", "sshd", "Failed password"
            ),
            "sudo/sudo.yml": rule_text(SUDO_ID, "Sudo to root", "medium", "sudo", "COMMAND="),
            "broken.yml": BROKEN_YAML,
        },
    )
    write_pack(
        data_dir,
        "bravo",
        {
            "web.yml": rule_text(WEB_ID, "Web path traversal", "low", "apache", "../"),
            "copy.yml": rule_text(SSH_ID, "SSH copy", "critical", "sshd", "other"),
        },
    )
    # Only our packs, so that the built-in pack growing never changes these tests.
    registry = RuleRegistry(data_dir, include_builtin=False)
    puffin.state.extras[STATE_KEY] = registry
    registry.reload()
    return puffin


def test_the_server_loads_the_built_in_pack_at_start(puffin):
    builtin = builtin_pack_path()
    if builtin is None:
        pytest.skip("the built-in pack is not installed")
    admin = puffin.actor(puffin.default_organisation_id, Role.ADMIN)
    page = admin.get("/api/v1/rules", params={"pack": "builtin"}).json()
    assert page["total"] > 0
    assert admin.get("/api/v1/rules/problems", params={"pack": "builtin"}).json()["total"] == 0


def test_list_shows_the_loaded_rules_most_severe_first_and_filters(loaded):
    reader = loaded.actor(loaded.default_organisation_id, Role.READ_ONLY)
    ours = reader.get("/api/v1/rules").json()["items"]
    assert [item["id"] for item in ours] == [SSH_ID, SUDO_ID, WEB_ID]
    ssh = ours[0]
    assert ssh["logsource"] == {"product": "linux", "category": "", "service": "sshd"}
    assert ssh["enabled"] is True
    assert ssh["staged"] is False
    assert ssh["file"] == "ssh.yml"
    by_level = reader.get("/api/v1/rules", params={"level": "medium"}).json()
    assert [item["id"] for item in by_level["items"]] == [SUDO_ID]
    by_text = reader.get("/api/v1/rules", params={"text": "TRAVERSAL"}).json()
    assert [item["id"] for item in by_text["items"]] == [WEB_ID]
    by_pack = reader.get("/api/v1/rules", params={"pack": "alpha"}).json()
    assert {item["id"] for item in by_pack["items"]} == {SSH_ID, SUDO_ID}
    sliced = reader.get("/api/v1/rules", params={"pack": "alpha", "limit": 1, "offset": 1}).json()
    assert sliced["total"] == 2
    assert [item["id"] for item in sliced["items"]] == [SUDO_ID]
    assert reader.get("/api/v1/rules", params={"level": "apocalyptic"}).status_code == 422


def test_detail_has_the_yaml_source_switches_and_error_count(loaded):
    reader = loaded.actor(loaded.default_organisation_id, Role.READ_ONLY)
    detail = reader.get(f"/api/v1/rules/{SSH_ID}").json()
    assert detail["title"] == "SSH password guessing"
    assert "full_log|contains: 'Failed password'" in detail["source"]
    assert detail["falsepositives"] == ["Administrators at work"]
    assert detail["tags"] == ["attack.credential_access", "attack.t1110.001"]
    assert detail["errors"] == {"count": 0, "last": ""}
    assert (detail["enabled"], detail["staged"]) == (True, False)
    assert reader.get("/api/v1/rules/no-such-rule").status_code == 404


def test_error_messages_are_shown_in_full_to_site_admins_only(loaded):
    snapshot = rule_registry(loaded.state).current
    snapshot.ruleset.errors[SSH_ID] = RuleErrors(count=3, last="TypeError: bad value 'hunter2'")
    admin = loaded.actor(loaded.default_organisation_id, Role.ADMIN)
    seen = admin.get(f"/api/v1/rules/{SSH_ID}").json()["errors"]
    assert seen == {"count": 3, "last": "TypeError"}
    site = loaded.site_admin().get(f"/api/v1/rules/{SSH_ID}").json()["errors"]
    assert site["last"] == "TypeError: bad value 'hunter2'"


def test_an_admin_switches_a_rule_for_their_organisation_only_and_it_is_audited(loaded):
    other_org = loaded.organisation("other")
    admin = loaded.actor(loaded.default_organisation_id, Role.ADMIN)
    other = loaded.actor(other_org, Role.ADMIN)
    changed = admin.put(f"/api/v1/rules/{SSH_ID}/settings", json={"enabled": False})
    assert changed.status_code == 200
    assert changed.json() == {"rule_id": SSH_ID, "enabled": False, "staged": False}
    staged = admin.put(f"/api/v1/rules/{SSH_ID}/settings", json={"staged": True}).json()
    assert (staged["enabled"], staged["staged"]) == (False, True)
    assert admin.get(f"/api/v1/rules/{SSH_ID}").json()["enabled"] is False
    assert other.get(f"/api/v1/rules/{SSH_ID}").json()["enabled"] is True
    disabled = admin.get("/api/v1/rules", params={"enabled": False}).json()["items"]
    assert [item["id"] for item in disabled] == [SSH_ID]
    assert other.get("/api/v1/rules", params={"enabled": False}).json()["total"] == 0
    trail = admin.get("/api/v1/audit", params={"object_type": "rule"}).json()["items"]
    assert {entry["object_id"] for entry in trail} == {SSH_ID}
    assert len(trail) == 2
    assert other.get("/api/v1/audit", params={"object_type": "rule"}).json()["total"] == 0


def test_switching_needs_an_admin_a_known_rule_and_something_to_change(loaded):
    org = loaded.default_organisation_id
    analyst = loaded.actor(org, Role.ANALYST)
    admin = loaded.actor(org, Role.ADMIN)
    body = {"enabled": False}
    assert analyst.put(f"/api/v1/rules/{SSH_ID}/settings", json=body).status_code == 403
    assert admin.put("/api/v1/rules/unknown/settings", json=body).status_code == 404
    assert admin.put(f"/api/v1/rules/{SSH_ID}/settings", json={}).status_code == 422
    bad = admin.put(f"/api/v1/rules/{SSH_ID}/settings", json={"enabled": False, "x": 1})
    assert bad.status_code == 422
    assert admin.get(f"/api/v1/rules/{SSH_ID}").json()["enabled"] is True


def test_problems_list_broken_files_and_duplicate_ids_with_both_files(loaded):
    reader = loaded.actor(loaded.default_organisation_id, Role.READ_ONLY)
    problems = reader.get("/api/v1/rules/problems").json()
    assert problems["total"] == 2
    by_file = {(p["pack"], p["file"]): p for p in problems["items"]}
    broken = by_file[("alpha", "broken.yml")]
    assert broken["line"] == 4
    assert "not valid YAML" in broken["reason"]
    duplicate = by_file[("bravo", "copy.yml")]
    assert SSH_ID in duplicate["reason"]
    assert "ssh.yml" in duplicate["reason"]
    assert "alpha" in duplicate["reason"]
    # The first copy is the one that runs.
    assert reader.get(f"/api/v1/rules/{SSH_ID}").json()["title"] == "SSH password guessing"
    only_bravo = reader.get("/api/v1/rules/problems", params={"pack": "bravo"}).json()
    assert [p["file"] for p in only_bravo["items"]] == ["copy.yml"]
    assert "/" not in broken["file"]  # paths are shown relative to the pack, never absolute


def test_a_site_admin_reloads_the_rules_after_an_import(loaded):
    write_pack(
        loaded.state.settings.data_dir,
        "charlie",
        {"late.yml": rule_text(LATE_ID, "Imported later", "high", "sshd", "late")},
    )
    admin = loaded.actor(loaded.default_organisation_id, Role.ADMIN)
    assert admin.get(f"/api/v1/rules/{LATE_ID}").status_code == 404
    assert admin.post("/api/v1/rules/reload").status_code == 403
    assert rule_registry(loaded.state).needs_reload()
    reloaded = loaded.site_admin().post("/api/v1/rules/reload")
    assert reloaded.status_code == 200
    assert reloaded.json()["packs"] == ["alpha", "bravo", "charlie"]
    assert reloaded.json()["rules"] == 4
    assert admin.get(f"/api/v1/rules/{LATE_ID}").json()["pack"] == "charlie"
    assert not rule_registry(loaded.state).needs_reload()
