"""Whole events through the fixer: generated ones of 0 to 40,000 attributes, real ones,
and OpenTIP deciding what the lists leave open."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.misp import FakeMisp, generate_event
from tests.fakes.opentip import fake_opentip

from puffin.intel.misp_fixer.classify import Classifier
from puffin.intel.misp_fixer.fixer import RunReport
from puffin.intel.misp_fixer.opentip import OpenTipClient
from puffin.intel.misp_fixer.settings import DEFAULT_IDS_TYPES, DEFAULT_NON_CORRELATING_TYPES

from .conftest import MakeFixer, misp_events_dir


def assert_fixed(misp: FakeMisp, event_id: str, report: RunReport) -> None:
    """Check the event as MISP now holds it against what a fixed event must look like."""
    flagged = {d.attribute_uuid for d in report.decisions}
    for attribute in misp.attributes(event_id):
        sightings = misp.attribute(attribute["uuid"])["Sighting"]
        tagged = "false-positive" in [t["name"] for t in attribute["Tag"]]
        if attribute["uuid"] in flagged:
            assert attribute["to_ids"] is False, attribute
            assert tagged, attribute
            assert [s["type"] for s in sightings] == ["1"], attribute
            continue
        assert not tagged, attribute
        assert sightings == [], attribute
        if attribute["type"] in DEFAULT_IDS_TYPES:
            assert (attribute["to_ids"], attribute["disable_correlation"]) == (True, False)
        if attribute["type"] in DEFAULT_NON_CORRELATING_TYPES:
            assert attribute["disable_correlation"] is True, attribute


@pytest.mark.parametrize(
    "size",
    [0, 1, 4000, pytest.param(40_000, marks=pytest.mark.slow)],
)
def test_generated_events_of_every_size_are_fixed_in_few_calls_and_stay_fixed(
    misp: FakeMisp, make_fixer: MakeFixer, size: int
) -> None:
    event_id = misp.add_event(generate_event(size, seed=size))
    fixer = make_fixer()

    report = fixer.run(event_id=event_id)

    assert report.attributes == size
    assert not report.partial
    assert report.errors == []
    assert_fixed(misp, event_id, report)
    assert [t["name"] for t in misp.event(event_id)["Tag"]] == ["tlp:white", "tlp:clear"]
    if size:
        assert report.decisions, "the mix always holds public resolvers"
    edited = len({c.target for c in report.applied if c.kind not in {"sighting", "event_tag"}})
    sighted = sum(1 for c in report.applied if c.kind == "sighting")
    page = fixer.settings.page_size
    assert report.misp_write_calls <= math.ceil(edited / page) + math.ceil(sighted / page) + 2
    again = fixer.run(event_id=event_id)
    assert again.planned == []
    assert again.misp_write_calls == 0


def test_a_real_misp_event_with_objects_is_fixed_inside_its_objects(
    misp: FakeMisp, make_fixer: MakeFixer, shared_data_dir: Path
) -> None:
    document = json.loads((misp_events_dir(shared_data_dir) / "existing_event.json").read_text())
    for misp_object in document["Object"]:
        for attribute in misp_object["Attribute"]:
            if attribute["type"] == "ip-dst":
                attribute["to_ids"] = False  # an analyst left the C2 addresses out of IDS
    event_id = misp.add_event(document)
    fixer = make_fixer()

    report = fixer.run(event_id=event_id)

    assert_fixed(misp, event_id, report)
    in_objects = [a for a in misp.attributes(event_id) if a["object_id"] != "0"]
    assert [a["to_ids"] for a in in_objects if a["type"] == "ip-dst"] == [True] * 12
    edits = [c.body["Event"] for c in misp.writes if c.path.startswith("/events/edit/")]
    sent_in_objects = [a for body in edits for o in body.get("Object", []) for a in o["Attribute"]]
    assert sent_in_objects, "object attributes travel inside their objects"
    tags = [t["name"] for t in misp.event(event_id)["Tag"]]
    assert "tlp:white" in tags
    assert "tlp:clear" in tags
    assert fixer.run(event_id=event_id).planned == []


def test_every_real_misp_event_fixture_is_handled_without_error(
    misp: FakeMisp, make_fixer: MakeFixer, shared_data_dir: Path
) -> None:
    fixer = make_fixer()
    loaded: set[str] = set()
    for path in sorted(misp_events_dir(shared_data_dir).glob("*.json")):
        document: Any = json.loads(path.read_text(encoding="utf-8"))
        event = document.get("Event", document) if isinstance(document, dict) else {}
        if not {"Attribute", "Object"} & set(event) or event.get("uuid") in loaded:
            continue  # a lone attribute or sighting, or another version of a loaded event
        loaded.add(event.get("uuid", path.name))
        event_id = misp.load_event(path, shift_to=time.time())
        report = fixer.run(event_id=event_id)
        assert not report.partial, path.name
        assert report.errors == [], path.name
        assert_fixed(misp, event_id, report)
        assert fixer.run(event_id=event_id).planned == [], path.name
    assert len(loaded) >= 5


def test_opentip_decides_what_the_lists_leave_open_and_its_quota_is_reported(
    misp: FakeMisp, make_fixer: MakeFixer, tmp_path: Path
) -> None:
    clean, unknown, spare = "a" * 64, "b" * 64, "c" * 64
    event_id = misp.add_event(
        {
            "Event": {
                "info": "OpenTIP",
                "Attribute": [
                    {"type": "sha256", "value": value, "to_ids": True}
                    for value in (clean, unknown, spare)
                ],
            }
        }
    )
    with fake_opentip(quota=2) as opentip:
        opentip.answer("hash", clean, "Green", "Clean")
        opentip.answer("hash", unknown, "Grey")
        client = OpenTipClient(
            api_key=opentip.api_key,
            cache_path=tmp_path / "opentip.db",
            base_url=opentip.base_url,
            concurrency=1,  # one at a time, so the quota falls on the last value
        )
        classifier = Classifier(common_false_positives=[], warninglists=None, opentip=client)
        with client:
            report = make_fixer(classifier=classifier).run(event_id=event_id)

    assert [(d.value, d.source) for d in report.decisions] == [(clean, "opentip")]
    assert report.lookups == 2
    assert any("quota" in error for error in report.errors)
    values = {a["value"]: a for a in misp.attributes(event_id)}
    assert values[clean]["to_ids"] is False
    assert values[unknown]["to_ids"] is True
    assert values[spare]["to_ids"] is True


def test_the_remote_limit_leaves_values_for_the_next_run_and_says_so(
    misp: FakeMisp, make_fixer: MakeFixer, tmp_path: Path
) -> None:
    hashes = [f"{n:064x}" for n in range(1, 6)]
    event_id = misp.add_event(
        {"Event": {"Attribute": [{"type": "sha256", "value": h, "to_ids": True} for h in hashes]}}
    )
    with fake_opentip() as opentip:
        for value in hashes:
            opentip.answer("hash", value, "Green", "Clean")
        client = OpenTipClient(
            api_key=opentip.api_key, cache_path=tmp_path / "opentip.db", base_url=opentip.base_url
        )
        classifier = Classifier(common_false_positives=[], warninglists=None, opentip=client)
        with client:
            fixer = make_fixer(classifier=classifier, max_attributes=2)
            first = fixer.run(event_id=event_id)
            second = fixer.run(event_id=event_id)

    assert (first.lookups, first.not_looked_up, len(first.decisions)) == (2, 3, 2)
    assert second.lookups == 2
    assert len(second.decisions) == 4
