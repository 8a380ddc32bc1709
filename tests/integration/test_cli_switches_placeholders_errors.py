"""`puffin rules enable|disable|stage|promote`, `--placeholders` for lint, hunt and
logtest, and hunt's per-rule error counts and skipped rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from puffin.app import build_state
from puffin.auth import service as auth_service
from puffin.cli.main import build_app
from puffin.core.db import transaction
from puffin.core.settings import Settings
from puffin.detection import rule_catalogue
from puffin.detection.engine.compiled import CompiledRule
from puffin.detection.loader import RuleCache, RuleFile, _key, compile_file

runner = CliRunner()

ROOT_LOGIN = "9a32b578-5d3c-4ff8-adea-93b7e5d31fba"
SERVICE_RULE = """\
title: Login by a service account
id: 3c0a8f52-6a55-4b0e-9d0f-3f1c2b7a9e10
status: test
logsource: {product: linux, service: sshd}
detection:
  selection:
    action: login
    status: success
    user|expand: '%service_accounts%'
  condition: selection
level: high
"""
DEPLOY_LOGIN = (
    "Dec  4 10:00:01 web1 sshd[811]: Accepted password for deploy from 192.0.2.20 port 50001 ssh2\n"
)


def puffin(*args: str, stdin: str | None = None):
    return runner.invoke(build_app(list(args)), list(args), input=stdin)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PUFFIN_CACHE_DIR", str(tmp_path / "cache"))


def _switch_of(data_dir: Path, rule_id: str):
    state = build_state(Settings(data_dir=data_dir, environment="test", tls=False))
    try:
        with transaction(state.session_factory) as session:
            org = auth_service.get_organisation_by_slug(session=session, slug="default")
            switches = rule_catalogue.organisation_switches(session=session, organisation_id=org.id)
    finally:
        state.engine.dispose()
    return switches.get(rule_id)


def test_rules_disable_and_enable_switch_one_rule_in_one_organisation(tmp_path):
    data = tmp_path / "var"
    off = puffin("rules", "disable", ROOT_LOGIN, "--org", "default", "--data-dir", str(data))
    assert off.exit_code == 0, off.output
    assert f"rule {ROOT_LOGIN} (Root login over SSH) is disabled in organisation default" in (
        off.output
    )
    assert _switch_of(data, ROOT_LOGIN).enabled is False
    on = puffin("rules", "enable", ROOT_LOGIN, "--org", "default", "--data-dir", str(data))
    assert on.exit_code == 0, on.output
    assert "is enabled" in on.output
    assert _switch_of(data, ROOT_LOGIN).enabled is True


def test_rules_stage_and_promote_switch_forwarding_in_one_organisation(tmp_path):
    data = tmp_path / "var"
    staged = puffin("rules", "stage", ROOT_LOGIN, "--org", "default", "--data-dir", str(data))
    assert staged.exit_code == 0, staged.output
    assert "is enabled, staged (alerts stored, not forwarded) in organisation default" in (
        staged.output
    )
    switch = _switch_of(data, ROOT_LOGIN)
    assert (switch.enabled, switch.staged) == (True, True)
    promoted = puffin("rules", "promote", ROOT_LOGIN, "--org", "default", "--data-dir", str(data))
    assert promoted.exit_code == 0, promoted.output
    assert "staged" not in promoted.output
    assert _switch_of(data, ROOT_LOGIN).staged is False
    unknown = puffin("rules", "stage", "no-such-rule", "--org", "default", "--data-dir", str(data))
    assert unknown.exit_code == 1
    assert "no rule with id 'no-such-rule'" in unknown.output


def test_rules_enable_names_an_unknown_rule_or_organisation(tmp_path):
    data = tmp_path / "var"
    unknown = puffin(
        "rules", "disable", "no-such-rule", "--org", "default", "--data-dir", str(data)
    )
    assert unknown.exit_code == 1
    assert "no rule with id 'no-such-rule'" in unknown.output
    no_org = puffin("rules", "disable", ROOT_LOGIN, "--org", "nowhere", "--data-dir", str(data))
    assert no_org.exit_code == 1
    assert "no organisation with slug 'nowhere'" in no_org.output
    missing = puffin("rules", "disable", ROOT_LOGIN, "--data-dir", str(data))
    assert missing.exit_code == 2


def _rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "service_account.yml").write_text(SERVICE_RULE)
    return folder


def test_lint_reports_a_placeholder_without_values_and_takes_them_from_a_file(tmp_path):
    rules = _rules(tmp_path)
    bare = puffin("rules", "lint", str(rules))
    assert bare.exit_code == 0, bare.output
    assert "placeholder %service_accounts% has no values" in bare.output
    values = tmp_path / "placeholders.yml"
    values.write_text("service_accounts: [backup, deploy]\n")
    given = puffin("rules", "lint", str(rules), "--placeholders", str(values))
    assert given.exit_code == 0, given.output
    assert "placeholder" not in given.output
    assert "1 rules loaded, 0 errors, 0 warnings" in given.output
    values.write_text("service_accounts: {nested: true}\n")
    bad = puffin("rules", "lint", str(rules), "--placeholders", str(values))
    assert bad.exit_code == 2
    assert "expected a list of text values" in bad.output


def test_logtest_matches_expand_with_placeholders_and_warns_without(tmp_path, cache):
    rules = _rules(tmp_path)
    values = tmp_path / "puffin.toml"
    values.write_text('[detection.placeholders]\nservice_accounts = ["backup", "deploy"]\n')
    given = puffin(
        "logtest", "--rules", str(rules), "--placeholders", str(values), stdin=DEPLOY_LOGIN
    )
    assert given.exit_code == 0, given.output
    assert "Login by a service account" in given.output
    bare = puffin("logtest", "--rules", str(rules), stdin=DEPLOY_LOGIN)
    assert bare.exit_code == 0, bare.output
    assert "placeholder %service_accounts% has no values" in bare.output
    assert "--placeholders FILE" in bare.output
    assert "no rule matched" in bare.output
    missing = puffin("logtest", "--placeholders", str(tmp_path / "nope.yml"), stdin="")
    assert missing.exit_code == 2
    assert "cannot read" in missing.output


def test_hunt_matches_expand_with_placeholders(tmp_path, cache):
    rules = _rules(tmp_path)
    log = tmp_path / "auth.log"
    log.write_text(DEPLOY_LOGIN)
    values = tmp_path / "values.yaml"
    values.write_text("service_accounts: deploy\n")
    found = puffin("hunt", str(log), "--rules", str(rules), "--placeholders", str(values))
    assert found.exit_code == 0, found.output
    assert "Login by a service account" in found.output
    assert "1 matches" in found.output
    bare = puffin("hunt", str(log), "--rules", str(rules))
    assert "has no values" in bare.output
    assert "no rule matched" in bare.output


def _poison_cache(tmp_path: Path, rule_path: Path) -> None:
    """Store a compiled copy of the rule whose matcher raises, as a corrupt cache would."""
    text = rule_path.read_text()
    body = compile_file(RuleFile(str(rule_path), text), {})
    rule = CompiledRule.from_row(body["rules"][0], str(rule_path))
    raising = dataclasses.replace(
        rule, source="def match(e, L, R):\n    return 1 / 0\n", literals=None, event_ids=None
    )
    body["rules"][0] = raising.to_row()
    cache = RuleCache(tmp_path / "cache" / "rules.sqlite")
    cache.put(_key(text, {}), body)
    cache.close()


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_hunt_prints_how_often_each_rule_raised(tmp_path, cache, jobs):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "raising.yml").write_text(SERVICE_RULE.replace("%service_accounts%", "deploy"))
    (rules / "fine.yml").write_text(
        SERVICE_RULE.replace("3c0a8f52", "4d1b9a63")
        .replace("Login by a service account", "Any SSH login")
        .replace("    user|expand: '%service_accounts%'\n", "")
    )
    _poison_cache(tmp_path, rules / "raising.yml")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text(DEPLOY_LOGIN * 2)
    (logs / "b.log").write_text(DEPLOY_LOGIN)
    result = puffin("hunt", str(logs), "--rules", str(rules), "--jobs", jobs)
    assert result.exit_code == 0, result.output
    assert "Rules that raised errors" in result.output
    assert "ZeroDivisionError" in result.output
    assert "1 rules raised 3 errors" in result.output
    assert "3 matches" in result.output  # the other rule still matched every record


def test_hunt_lists_rules_that_did_not_load_and_counts_them_in_its_summary(tmp_path, cache):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "fine.yml").write_text(SERVICE_RULE.replace("%service_accounts%", "deploy"))
    (rules / "broken.yml").write_text(
        SERVICE_RULE.replace("3c0a8f52", "4d1b9a63").replace(
            "condition: selection", "condition: nope"
        )
    )
    log = tmp_path / "auth.log"
    log.write_text(DEPLOY_LOGIN)
    result = puffin("hunt", str(log), "--rules", str(rules))
    assert result.exit_code == 0, result.output
    assert "skipped rule" in result.output
    assert "broken.yml" in result.output
    assert "1 rules and 0 correlations could not be loaded" in result.output
    assert "1 matches" in result.output
