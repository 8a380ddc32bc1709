"""A warm `puffin hunt`: no rule parser loaded, matchers' code taken from the compile cache.

The cache keeps each matcher's code object (marshal data, as in `.pyc` files) under its
source and this Python: a hunt with a warm cache compiles nothing, a changed source never
runs old code, and damaged code is compiled again from its source.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

from tests.integration.test_hunt_fast_paths import SSH_ROOT

from puffin.detection.engine.ruleset import RuleSet, code_key
from puffin.detection.hunt import find_sources, run_hunt
from puffin.detection.loader import RuleCache, load_rules
from puffin.ingest.windows import flatten_evtx_record

PUFFIN_BACKENDS = ("sqlite",)  # files only: no state database

LOGIN = "Nov 22 10:14:03 web1 sshd[811]: Accepted password for root from 203.0.113.5 port 1 ssh2\n"

# Runs `puffin hunt` in this process, then says whether pySigma, Typer or pydantic loaded.
HUNT_AND_REPORT = """
import sys
from puffin.cli.main import main
sys.argv = ["puffin", "hunt", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
for package in ("sigma", "typer", "pydantic"):
    loaded = any(name == package or name.startswith(package + ".") for name in sys.modules)
    print(f"{package} {'loaded' if loaded else 'not loaded'}", file=sys.stderr)
"""


def _files(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "ssh_root.yml").write_text(SSH_ROOT)
    log = tmp_path / "auth.log"
    log.write_text(LOGIN * 3)
    return rules, log


def test_the_hunt_modules_import_without_the_rule_parser() -> None:
    modules = "puffin.cli.hunt, puffin.detection.hunt, puffin.detection.loader"
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.startswith('sigma')))"
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "[]"


def test_a_warm_hunt_does_not_load_the_rule_parser(tmp_path: Path) -> None:
    rules, log = _files(tmp_path)
    env = {"PUFFIN_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.run(
            [sys.executable, "-c", HUNT_AND_REPORT, str(log), "--rules", str(rules)],
            capture_output=True,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    cold, warm = (run.stderr for run in runs)
    assert "3 matches" in cold
    assert "sigma loaded" in cold  # parsed: nothing was cached yet
    assert "3 matches" in warm
    assert "sigma not loaded" in warm
    # A plain hunt command line is parsed without Typer (and the pydantic it brings).
    assert "typer not loaded" in warm
    assert "pydantic not loaded" in warm


def test_a_damaged_cache_entry_is_compiled_again(tmp_path: Path) -> None:
    rules, _ = _files(tmp_path)
    path = tmp_path / "cache" / "rules.sqlite"
    cache = RuleCache(path)
    first = load_rules([rules], cache=cache)
    cache.close()
    with sqlite3.connect(path) as db:
        assert db.execute("UPDATE rules SET body = ?", (b"\xff not marshal",)).rowcount == 1
    cache = RuleCache(path)
    again = load_rules([rules], cache=cache)
    cache.close()
    assert again.cached == 0  # the damaged body was not used: the file was parsed again
    assert [rule.to_row() for rule in again.rules] == [rule.to_row() for rule in first.rules]
    cache = RuleCache(path)
    assert load_rules([rules], cache=cache).cached == 1  # and stored again
    cache.close()


def test_the_cache_keeps_matcher_code_and_runs_it_only_for_its_own_source(
    tmp_path: Path,
) -> None:
    rules, log = _files(tmp_path)
    sources = find_sources([log])

    def hunt() -> tuple[object, object]:
        cache = RuleCache(tmp_path / "cache" / "rules.sqlite")
        loaded = load_rules([rules], cache=cache, matcher_code=True)
        result = run_hunt(sources, loaded.rules, jobs=1, code=loaded.code)
        cache.put_code(result.code)
        cache.close()
        return loaded, result

    first_load, first = hunt()
    [rule] = first_load.rules
    assert first_load.code == {}
    assert list(first.code) == [code_key(rule)]  # compiled from source, handed to the cache
    again_load, again = hunt()
    assert list(again_load.code) == [code_key(rule)]
    assert again.code == {}  # nothing compiled: the cached code ran
    assert [m.record_id for m in again.matches] == [m.record_id for m in first.matches] == [1, 2, 3]

    # Another source under the same id never runs the cached code of the first.
    raising = dataclasses.replace(rule, source="def match(e, L, R):\n    return 1 / 0\n")
    ruleset = RuleSet([raising], code=again_load.code)
    assert ruleset.evaluate({"program": "sshd", "user": "root"}) == []
    assert "ZeroDivisionError" in ruleset.errors[rule.id].last

    # Damaged code is compiled again from the source.
    damaged = RuleSet([rule], code={code_key(rule): b"not marshal data"})
    assert [m.rule_id for m in damaged.evaluate({"program": "sshd", "user": "root"})] == [rule.id]


def test_a_new_cache_folder_is_private(tmp_path: Path) -> None:
    cache = RuleCache(tmp_path / "new" / "rules.sqlite")
    cache.close()
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700


def test_a_windows_event_in_another_mapping_type_flattens_like_a_dict() -> None:
    record = {
        "Event": {
            "System": {
                "EventID": {"#attributes": {"Qualifiers": 0}, "#text": 4688},
                "Channel": "Security",
                "Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing"}},
                "Execution": {"#attributes": {"ProcessID": 4, "ThreadID": 8}},
            },
            "EventData": {"NewProcessName": "C:\\x.exe", "Threat Name": {"#text": "T"}},
            "UserData": {"Nested": {"Inner": "value"}},
        }
    }

    def frozen(value: object) -> object:
        if isinstance(value, dict):
            return MappingProxyType({key: frozen(item) for key, item in value.items()})
        return value

    flat = flatten_evtx_record(record)
    assert flatten_evtx_record(frozen(record)) == flat  # type: ignore[arg-type]
    assert (flat["EventID"], flat["ThreatName"], flat["Inner"]) == (4688, "T", "value")
    assert flat["ExecutionThreadID"] == 8
