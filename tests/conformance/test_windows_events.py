"""Every recorded Windows event of SigmaHQ's regression data normalises to the flat shape."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from tests.conftest import shared_data

from puffin.ingest.windows import flatten_evtx_record

evtx = pytest.importorskip("evtx")
REGRESSION = shared_data() / "sigma" / "regression_data"
FILES = sorted(REGRESSION.rglob("*.evtx")) if REGRESSION.is_dir() else []

pytestmark = pytest.mark.conformance


@pytest.mark.skipif(not FILES, reason="../shared/data/sigma/regression_data is absent")
def test_all_regression_records_flatten_with_their_identity_and_data():
    records = 0
    for path in FILES:
        for record in evtx.PyEvtxParser(str(path)).records_json():
            raw = json.loads(record["data"])
            flat = flatten_evtx_record(raw)
            records += 1
            system = raw["Event"]["System"]
            assert isinstance(flat["EventID"], int), path
            assert flat["Channel"] == system["Channel"], path
            assert str(flat["EventRecordID"]) == str(system["EventRecordID"]), path
            assert datetime.fromisoformat(flat["TimeCreated"].replace("Z", "+00:00")), path
            for name, value in (raw["Event"].get("EventData") or {}).items():
                if name != "#attributes" and not isinstance(value, dict):
                    assert flat[name] == value, (path, name)
    assert records >= len(FILES)


@pytest.mark.skipif(not FILES, reason="../shared/data/sigma/regression_data is absent")
def test_a_sysmon_process_creation_keeps_the_fields_sigma_uses():
    sysmon = [
        json.loads(r["data"])
        for path in FILES
        for r in evtx.PyEvtxParser(str(path)).records_json()
        if '"EventID":1,' in r["data"] and "Sysmon" in r["data"]
    ]
    assert sysmon, "no Sysmon process creation in the regression data"
    flat = flatten_evtx_record(sysmon[0])
    assert flat["Channel"] == "Microsoft-Windows-Sysmon/Operational"
    assert flat["Provider_Name"] == "Microsoft-Windows-Sysmon"
    assert {"Image", "CommandLine", "ParentImage", "User"} <= flat.keys()


def test_bad_records_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="System"):
        flatten_evtx_record({"Event": {"EventData": {}}})
    with pytest.raises(ValueError, match="Event"):
        flatten_evtx_record({"Event": "text"})
    text_id = flatten_evtx_record(
        {"Event": {"System": {"EventID": {"#attributes": {"Qualifiers": 0}, "#text": 4624}}}}
    )
    assert text_id["EventID"] == 4624
