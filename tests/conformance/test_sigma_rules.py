"""SigmaHQ's rules load in the engine, and the rules with regression data fire on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tests.conftest import shared_data

from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import LoadedRules, load_rules
from puffin.ingest.windows import flatten_evtx_record

evtx = pytest.importorskip("evtx")
SIGMA = shared_data() / "sigma"
FOLDERS = ("rules", "rules-emerging-threats", "rules-threat-hunting", "rules-dfir")
CASES = (
    sorted((SIGMA / "regression_data").rglob("info.yml"))
    if (SIGMA / "regression_data").is_dir()
    else []
)

# Rules whose `.evtx` holds more records that meet the rule than `match_count` says.
# Checked by hand: every extra record meets the rule's selection literally, so a correct
# engine reports them all.
MORE_RECORDS_THAN_COUNTED = {
    "0b9ad457-2554-44c1-82c2-d56a99c42377": "three AnyDesk user.conf files are written",
    "8fbf3271-1ef6-4e94-8210-03c2317947f6": "three dump-tool file names are created",
    "45e112d0-7759-4c2a-aa36-9f8fb79d3393": "three zone-map registry values are set",
    "c7dcacd0-cc59-4004-b0a4-1d6cdebe6f3e": "both AutoShareWks and AutoShareServer are set to 0",
}

pytestmark = [
    pytest.mark.conformance,
    pytest.mark.skipif(not SIGMA.is_dir(), reason="../shared/data/sigma is absent"),
]


@pytest.fixture(scope="module")
def collection() -> LoadedRules:
    return load_rules([SIGMA / folder for folder in FOLDERS])


def test_the_whole_collection_loads_with_fewer_than_one_percent_unsupported(collection):
    assert collection.files >= 3_700
    rules = {rule.id for rule in collection.rules}
    assert len(rules) + len(collection.problems) >= 3_700
    assert len(collection.problems) < 0.01 * collection.files, [str(p) for p in collection.problems]
    for problem in collection.problems:
        assert problem.reason
        assert problem.line >= 1
        assert problem.path


def _cases() -> list[tuple[str, dict]]:
    found = []
    for info in CASES:
        data = yaml.safe_load(info.read_text("utf-8"))
        rule_id = data["rule_metadata"][0]["id"]
        for test in data.get("regression_tests_info") or []:
            if test.get("type") == "evtx":
                found.append((rule_id, test))
    return found


REGRESSION = _cases()


def test_there_are_202_regression_cases():
    assert len(REGRESSION) == 202


@pytest.mark.parametrize(("rule_id", "test"), REGRESSION, ids=[c[0] for c in REGRESSION])
def test_a_rule_fires_on_its_own_regression_events(collection, rule_id, test):
    rules = [rule for rule in collection.rules if rule.id == rule_id]
    assert rules, f"rule {rule_id} did not load"
    engine = RuleSet(rules)
    assert not engine.unmapped, engine.unmapped
    matches = 0
    for record in evtx.PyEvtxParser(str(SIGMA / test["path"])).records_json():
        matches += len(engine.evaluate(flatten_evtx_record(json.loads(record["data"]))))
    expected = test.get("match_count")
    assert matches >= 1
    if expected is not None:
        if rule_id in MORE_RECORDS_THAN_COUNTED:
            assert matches > expected, MORE_RECORDS_THAN_COUNTED[rule_id]
        else:
            assert matches == expected
    assert not engine.errors


def test_regression_files_exist():
    for _, test in REGRESSION:
        assert Path(SIGMA / test["path"]).is_file()
