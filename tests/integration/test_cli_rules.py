"""`puffin rules`: import packs (folder, zip, URL), list, lint and test, with clear exit codes."""

from __future__ import annotations

import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.test_rules_api import rule_text
from typer.testing import CliRunner

from puffin.cli.main import build_app

runner = CliRunner()

GOOD_ID = "7c1e2a90-3b4d-4f5e-8a6b-9c0d1e2f3a01"
OTHER_ID = "7c1e2a90-3b4d-4f5e-8a6b-9c0d1e2f3a02"

# Line 6 holds the mistake: a flow sequence that never closes before a new key.
BAD_YAML = """\
title: Bad YAML
id: 7c1e2a90-3b4d-4f5e-8a6b-9c0d1e2f3a03
status: test
logsource: {product: linux, service: sshd}
detection:
  selection: {program: [sshd}
  condition: selection
"""

# Line 8 uses a modifier Sigma does not have.
UNKNOWN_MODIFIER = """\
title: Unknown modifier
id: 7c1e2a90-3b4d-4f5e-8a6b-9c0d1e2f3a04
status: test
logsource:
  product: linux
detection:
  selection:
    CommandLine|frobnicate: 'x'
  condition: selection
"""

UNMAPPED = rule_text(
    "7c1e2a90-3b4d-4f5e-8a6b-9c0d1e2f3a05", "Mainframe logon", "low", "zos-racf", "LOGON"
).replace("product: linux", "product: mainframe")


def puffin(*args: str):
    """Run a puffin command in-process and return the result."""
    return runner.invoke(build_app(list(args)), list(args))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A folder of rules: two good ones, two broken ones, a tests file and a hidden folder."""
    root = tmp_path / "source"
    (root / "linux").mkdir(parents=True)
    (root / ".github").mkdir()
    (root / "linux" / "good.yml").write_text(
        rule_text(GOOD_ID, "Good SSH rule", "high", "sshd", "Failed password")
    )
    (root / "linux" / "good.tests.yml").write_text("positive: []\nnegative: []\n")
    (root / "other.yaml").write_text(rule_text(OTHER_ID, "Sudo rule", "low", "sudo", "COMMAND"))
    (root / "linux" / "bad_yaml.yml").write_text(BAD_YAML)
    (root / "unknown_modifier.yml").write_text(UNKNOWN_MODIFIER)
    (root / ".github" / "workflow.yml").write_text("on: push\n")
    return root


def test_import_copies_the_pack_loads_the_good_rules_and_lists_the_broken_ones(source, tmp_path):
    data = tmp_path / "var"
    result = puffin("rules", "import", str(source), "--name", "mine", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    pack = data / "rules" / "mine"
    assert "2 rules loaded, 2 broken" in result.output
    assert f"{pack / 'linux' / 'bad_yaml.yml'}:6: not valid YAML" in result.output
    assert f"{pack / 'unknown_modifier.yml'}:8: Unknown modifier 'frobnicate'" in result.output
    assert (pack / "linux" / "good.yml").is_file()
    assert (pack / "linux" / "good.tests.yml").is_file()  # tests travel with their rules
    assert not (pack / ".github").exists()
    assert [p.name for p in (data / "rules").iterdir()] == ["mine"]  # no staging left over
    listed = puffin("rules", "list", "--pack", "mine", "--data-dir", str(data))
    assert listed.exit_code == 0, listed.output
    assert "Good SSH rule" in listed.output
    assert "Sudo rule" in listed.output


def test_import_again_replaces_the_pack_and_a_failed_import_keeps_it(source, tmp_path):
    data = tmp_path / "var"
    assert puffin("rules", "import", str(source), "--data-dir", str(data)).exit_code == 0
    pack = data / "rules" / "source"  # the default name comes from the folder
    assert (pack / "other.yaml").is_file()
    (source / "other.yaml").unlink()
    again = puffin("rules", "import", str(source), "--data-dir", str(data))
    assert again.exit_code == 0, again.output
    assert not (pack / "other.yaml").exists()
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "bad.yml").write_text(BAD_YAML)
    failed = puffin(
        "rules", "import", str(only_broken), "--name", "source", "--data-dir", str(data)
    )
    assert failed.exit_code == 1
    assert "no rule could be loaded" in failed.output
    assert "bad.yml:6: not valid YAML" in failed.output
    assert (pack / "linux" / "good.yml").is_file()
    assert not (pack / "bad.yml").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/folder"], "no such file or folder"),
        (["ftp://example.org/rules.zip"], "only http:// and https://"),
        (["{source}", "--name", "../escape"], "is not allowed"),
        (["{source}", "--name", "builtin"], "is not allowed"),
        (["{notes}"], "not a folder, a zip archive or a .yml rule file"),
    ],
)
def test_import_refuses_bad_arguments_with_exit_code_2(source, tmp_path, args, message):
    notes = tmp_path / "notes.txt"
    notes.write_text("not rules")
    filled = [a.replace("{source}", str(source)).replace("{notes}", str(notes)) for a in args]
    result = puffin("rules", "import", *filled, "--data-dir", str(tmp_path / "var"))
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "var" / "rules" / "escape").exists()


def _release_zip(source: Path, target: Path) -> Path:
    """Pack the folder like a SigmaHQ release (rules under a top folder), plus a zip-slip."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(source.rglob("*")):
            if path.is_file():
                archive.write(path, f"sigma/rules/{path.relative_to(source).as_posix()}")
        archive.writestr("../escaped.yml", rule_text(OTHER_ID, "Escaped", "low", "sshd", "x"))
        archive.writestr("sigma/regression_data/info.yml", "id: not-a-rule\n")
    return target


def test_import_of_a_release_zip_keeps_its_layout_and_never_writes_outside(source, tmp_path):
    archive = _release_zip(source, tmp_path / "sigma_all_rules.zip")
    data = tmp_path / "var"
    result = puffin("rules", "import", str(archive), "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    pack = data / "rules" / "sigma_all_rules"
    assert (pack / "sigma" / "rules" / "linux" / "good.yml").is_file()
    assert not (data / "rules" / "escaped.yml").exists()
    assert not list(tmp_path.rglob("escaped.yml"))
    assert not (pack / "sigma" / "regression_data").exists()
    assert "2 rules loaded, 2 broken" in result.output


@pytest.fixture
def http_folder(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback serving a folder."""
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_import_downloads_an_http_url(source, tmp_path, http_folder):
    base, folder = http_folder
    _release_zip(source, folder / "release.zip")
    data = tmp_path / "var"
    result = puffin("rules", "import", f"{base}/release.zip", "--data-dir", str(data))
    assert result.exit_code == 0, result.output
    assert (data / "rules" / "release" / "sigma" / "rules" / "other.yaml").is_file()
    missing = puffin("rules", "import", f"{base}/missing.zip", "--data-dir", str(data))
    assert missing.exit_code == 1
    assert "cannot download" in missing.output


def test_list_filters_by_level_and_text_and_refuses_unknown_levels(source, tmp_path):
    data = tmp_path / "var"
    assert puffin("rules", "import", str(source), "--data-dir", str(data)).exit_code == 0
    high = puffin("rules", "list", "--pack", "source", "--level", "high", "--data-dir", str(data))
    assert "Good SSH rule" in high.output
    assert "Sudo rule" not in high.output
    text = puffin("rules", "list", "--text", "sudo rule", "--data-dir", str(data))
    assert "Sudo rule" in text.output
    assert "Good SSH rule" not in text.output
    bad = puffin("rules", "list", "--level", "apocalyptic", "--data-dir", str(data))
    assert bad.exit_code == 2


def test_lint_reports_errors_duplicates_and_warnings(source, tmp_path):
    result = puffin("rules", "lint", str(source))
    assert result.exit_code == 1
    assert f"{source / 'linux' / 'bad_yaml.yml'}:6: error: not valid YAML" in result.output
    assert f"{source / 'unknown_modifier.yml'}:8: error: Unknown modifier" in result.output
    clean = tmp_path / "clean"
    clean.mkdir()
    (clean / "unmapped.yml").write_text(UNMAPPED)
    (clean / "good.yml").write_text((source / "linux" / "good.yml").read_text())
    warned = puffin("rules", "lint", str(clean))
    assert warned.exit_code == 0, warned.output
    assert f"{clean / 'unmapped.yml'}:1: warning:" in warned.output
    assert "is not mapped" in warned.output
    twice = puffin("rules", "lint", str(clean), str(source / "linux" / "good.yml"))
    assert twice.exit_code == 1
    assert f"duplicate rule id {GOOD_ID}" in twice.output
    assert puffin("rules", "lint", str(tmp_path / "absent")).exit_code == 2


def test_test_runs_the_cases_beside_the_rules_and_fails_on_a_broken_case(tmp_path):
    pack = tmp_path / "pack"
    pack.mkdir()
    (pack / "guess.yml").write_text(
        rule_text(GOOD_ID, "Password guessing", "high", "sshd", "Failed password")
    )
    passing = (
        "positive:\n"
        "  - event: {program: sshd, full_log: 'Failed password for root'}\n"
        "negative:\n"
        "  - event: {program: sshd, full_log: 'Accepted password for root'}\n"
    )
    (pack / "guess.tests.yml").write_text(passing)
    ok = puffin("rules", "test", str(pack))
    assert ok.exit_code == 0, ok.output
    assert "1 passed, 0 failed" in ok.output
    (pack / "guess.tests.yml").write_text(passing.replace("Accepted", "Failed"))
    failed = puffin("rules", "test", str(pack))
    assert failed.exit_code == 1
    assert "FAILED" in failed.output
    assert "negative #0: fired" in failed.output
    assert puffin("rules", "test", str(tmp_path / "absent")).exit_code == 2
