"""`puffin misp-fixer run` and `token` against the fake MISP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import jwt
from tests.fakes.misp import FakeMisp
from typer.testing import CliRunner, Result

from puffin.cli.main import build_app
from puffin.intel.misp_fixer import tokens
from puffin.intel.misp_fixer.settings import FixerSettings

runner = CliRunner()


def puffin(*args: str, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(build_app(list(args)), list(args), env=env)


def flat(result: Result) -> str:
    """The output with Rich's line wrapping undone."""
    return " ".join(result.output.split())


def says(result: Result, text: str) -> bool:
    """Whether the output holds this text, however Rich wrapped it (paths break anywhere)."""
    return "".join(text.split()) in "".join(result.output.split())


def config_for(misp: FakeMisp, tmp_path: Path, *, warninglists: bool = False) -> Path:
    path = tmp_path / "puffin.toml"
    lines = ["[misp_fixer]", f'misp_url = "{misp.url}"', f'misp_key = "{misp.key}"']
    if not warninglists:
        lines.append("warninglists_include = []")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def one_event(misp: FakeMisp) -> str:
    attributes = [
        {"type": "ip-dst", "value": "8.8.8.8", "to_ids": True},
        {"type": "ip-dst", "value": "1.1.1.1", "to_ids": True},
        {"type": "comment", "value": "seen in a phishing wave"},
    ]
    return misp.add_event({"Event": {"info": "From the CLI", "Attribute": attributes}})


def test_dry_run_prints_the_plan_and_changes_nothing(misp: FakeMisp, tmp_path: Path) -> None:
    event_id = one_event(misp)
    config = config_for(misp, tmp_path)

    result = puffin("misp-fixer", "run", "--event", event_id, "--dry-run", "-c", str(config))

    assert result.exit_code == 0, result.output
    assert "From the CLI" in result.output
    assert "8.8.8.8" in result.output
    assert "Changes planned" in result.output
    assert "planned" in result.output
    assert misp.writes == []


def test_json_report_with_warninglists_then_a_second_run_is_unchanged(
    misp: FakeMisp, tmp_path: Path
) -> None:
    event_id = one_event(misp)
    config = config_for(misp, tmp_path, warninglists=True)
    args = ("misp-fixer", "run", "--event", event_id, "--json", "-c", str(config))

    first = json.loads(puffin(*args, "--data-dir", str(tmp_path)).output)
    second = json.loads(puffin(*args, "--data-dir", str(tmp_path)).output)

    sources = {d["value"]: d["source"] for d in first["decisions"]}
    assert sources == {"8.8.8.8": "list", "1.1.1.1": "warninglist"}
    assert first["outcome"] == "fixed"
    assert first["applied"]
    assert second["outcome"] == "unchanged"
    assert second["planned"] == []


def test_settings_from_the_environment_and_clear_errors(misp: FakeMisp, tmp_path: Path) -> None:
    env = {
        "PUFFIN_CONFIG": str(tmp_path / "absent.toml"),
        "PUFFIN_MISP_FIXER__MISP_URL": misp.url,
        "PUFFIN_MISP_FIXER__MISP_KEY": misp.key,
        "PUFFIN_MISP_FIXER__WARNINGLISTS_INCLUDE": "[]",
    }
    unknown = puffin("misp-fixer", "run", "--event", "404", env=env)
    assert unknown.exit_code == 1
    assert "no event 404" in unknown.output

    unset = puffin(
        "misp-fixer", "run", "--event", "1", env={**env, "PUFFIN_MISP_FIXER__MISP_KEY": ""}
    )
    assert unset.exit_code == 1
    assert "set misp_fixer.misp_url and misp_fixer.misp_key" in flat(unset)  # "" is unset

    misp.stop()
    down = puffin("misp-fixer", "run", "--event", "1", env=env)
    assert down.exit_code == 1
    assert "unreachable" in down.output.lower()


def test_an_unusable_opentip_cache_is_a_clear_error_naming_setting_and_path(
    misp: FakeMisp, tmp_path: Path
) -> None:
    event_id = one_event(misp)
    a_directory = tmp_path / "cache-is-a-directory"
    a_directory.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory", encoding="utf-8")
    env = {
        "PUFFIN_CONFIG": str(config_for(misp, tmp_path)),
        "PUFFIN_MISP_FIXER__OPENTIP_API_KEY": "k" * 32,
    }
    for cache, reason in ((a_directory, "unable to open database file"),
                          (a_file / "opentip.db", f"{a_file} is not a directory")):  # fmt: skip
        with_cache = {**env, "PUFFIN_MISP_FIXER__OPENTIP_CACHE_FILE": str(cache)}
        result = puffin("misp-fixer", "run", "--event", event_id, env=with_cache)
        assert result.exit_code == 2, result.output
        assert says(result, f"misp_fixer.opentip_cache_file {cache}: cannot open")
        assert says(result, reason)
        assert "Traceback" not in result.output

    default = puffin("misp-fixer", "run", "--event", event_id, "--data-dir", str(a_file), env=env)
    assert default.exit_code == 2, default.output
    assert says(default, f"cannot open the OpenTIP cache {a_file / 'misp-fixer' / 'opentip.db'}")
    assert says(default, "set misp_fixer.opentip_cache_file")
    assert misp.writes == []


def test_token_prints_a_token_that_verify_accepts(tmp_path: Path) -> None:
    result = puffin("misp-fixer", "token", "--days", "3", "--data-dir", str(tmp_path))

    assert result.exit_code == 0, result.output
    token = result.output.split()[0]
    secret = tokens.jwt_secret(FixerSettings(), tmp_path)
    assert tokens.verify(token, jwt_secret=secret) == "misp-workflow"
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    days = (datetime.fromtimestamp(expires, UTC) - datetime.now(UTC)).total_seconds() / 86400
    assert 2.9 < days <= 3


def test_serve_says_what_is_missing_or_wrong_before_listening(tmp_path: Path) -> None:
    env = {"PUFFIN_CONFIG": str(tmp_path / "absent.toml"), "PUFFIN_DATA_DIR": str(tmp_path)}
    unset = puffin("misp-fixer", "serve", env=env)
    assert unset.exit_code == 2
    assert "misp_fixer.misp_url and misp_fixer.misp_key" in flat(unset)
    assert "PUFFIN_MISP_FIXER__MISP_KEY" in flat(unset)

    configured = {
        **env,
        "PUFFIN_MISP_FIXER__MISP_URL": "https://misp.example.org",
        "PUFFIN_MISP_FIXER__MISP_KEY": "k" * 40,
    }
    bad_slug = puffin(
        "misp-fixer", "serve", env={**configured, "PUFFIN_MISP_FIXER__ORGANISATION": "Not A Slug"}
    )
    assert bad_slug.exit_code == 2
    assert "invalid [misp_fixer] settings: organisation" in flat(bad_slug)

    bad_url = puffin(
        "misp-fixer", "serve", env={**configured, "PUFFIN_MISP_FIXER__MISP_URL": "misp.example.org"}
    )
    assert bad_url.exit_code == 2
    assert "misp_url must start with https://" in flat(bad_url)

    bad_zone = puffin(
        "misp-fixer", "serve",
        env={**configured, "PUFFIN_MISP_FIXER__OPENTIP_BENIGN_ZONES": '["Green", "Blue"]'},
    )  # fmt: skip
    assert bad_zone.exit_code == 2
    assert "opentip_benign_zones: Value error, unknown OpenTIP zones 'Blue'" in flat(bad_zone)

    lonely_cert = tmp_path / "server.crt"
    lonely_cert.write_text("not used", encoding="utf-8")
    half = puffin("misp-fixer", "serve", "--tls-cert", str(lonely_cert), env=configured)
    assert half.exit_code == 2
    assert "tls_cert_file and tls_key_file must be given together" in flat(half)

    absent = puffin(
        "misp-fixer", "serve", "--tls-cert", str(lonely_cert), "--tls-key", "nope.key",
        env=configured,
    )  # fmt: skip
    assert absent.exit_code == 2
    assert "--tls-key nope.key does not exist" in flat(absent)

    both = puffin("misp-fixer", "serve", "--plain-http", "--tls-cert", str(lonely_cert),
                  env=configured)  # fmt: skip
    assert both.exit_code == 2
    assert "--plain-http serves no certificate" in flat(both)

    cache = tmp_path / "opentip-cache-dir"
    cache.mkdir()
    unusable_cache = puffin(
        "misp-fixer", "serve", "--plain-http",
        env={**configured, "PUFFIN_MISP_FIXER__OPENTIP_API_KEY": "k" * 32,
             "PUFFIN_MISP_FIXER__OPENTIP_CACHE_FILE": str(cache)},
    )  # fmt: skip
    assert unusable_cache.exit_code == 2
    assert says(unusable_cache, f"misp_fixer.opentip_cache_file {cache}: cannot open")
    assert not (tmp_path / "puffin.db").exists()  # nothing started
