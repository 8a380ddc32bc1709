"""The fixer against a fake MISP through the real PyMISP: every step of the issue."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.fakes.misp import HOST_ORG, FakeMisp

from puffin.intel.misp_fixer.misp import EventNotFound, MispRefused, MispUnavailable

from .conftest import MakeFixer, list_classifier

DAY = 86400
OTHER_ORG = {"id": "7", "name": "Partner CERT", "uuid": "0f8a2b1c-3d4e-4f50-8a6b-7c8d9e0f1a2b"}


def attribute(
    kind: str,
    value: str,
    *,
    to_ids: bool = False,
    correlation_off: bool = False,
    age_days: float = 0,
    tags: Sequence[str] = (),
) -> dict[str, Any]:
    """Return a MISP attribute as an event carries it."""
    return {
        "uuid": str(uuid.uuid4()),
        "type": kind,
        "category": "Network activity",
        "value": value,
        "to_ids": to_ids,
        "disable_correlation": correlation_off,
        "timestamp": str(int(time.time() - age_days * DAY)),
        "Tag": [{"name": name} for name in tags],
    }


def event(*attributes: dict[str, Any], tags: Sequence[str] = ("tlp:amber",), org=HOST_ORG) -> dict:
    return {
        "Event": {
            "info": "Test event",
            "Orgc": dict(org),
            "Org": dict(HOST_ORG),
            "Tag": [{"name": name} for name in tags],
            "Attribute": list(attributes),
        }
    }


def fp_sightings(misp: FakeMisp, attribute_uuid: str) -> list[dict[str, Any]]:
    return [s for s in misp.attribute(attribute_uuid)["Sighting"] if s["type"] == "1"]


def tags_of(item: dict[str, Any]) -> list[str]:
    return [tag["name"] for tag in item.get("Tag", [])]


def test_a_false_positive_is_flagged_tagged_and_sighted_and_keeps_its_value(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    resolver = attribute("ip-dst", "8.8.8.8", to_ids=True)
    attacker = attribute("ip-dst", "203.0.113.9", to_ids=True)
    event_id = misp.add_event(event(resolver, attacker))

    report = make_fixer().run(event_id=event_id)

    flagged = misp.attribute(resolver["uuid"])
    assert flagged["value"] == "8.8.8.8"
    assert not flagged["deleted"]
    assert flagged["to_ids"] is False
    assert "false-positive" in tags_of(flagged)
    assert [s["source"] for s in fp_sightings(misp, resolver["uuid"])] == ["puffin"]
    kept = misp.attribute(attacker["uuid"])
    assert kept["to_ids"] is True
    assert "false-positive" not in tags_of(kept)
    assert fp_sightings(misp, attacker["uuid"]) == []
    decision = report.decisions[0]
    assert (decision.attribute_uuid, decision.source, decision.detail, decision.action) == (
        resolver["uuid"],
        "list",
        "8.8.8.8",
        "flag",
    )
    assert len(report.decisions) == 1
    assert report.outcome == "fixed"
    assert not report.partial
    assert report.errors == []


def test_delete_action_soft_deletes_false_positives_without_tag_or_sighting(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    resolver = attribute("domain", "www.google.com", to_ids=True)
    other = attribute("domain", "evil-updates.top", to_ids=True)
    event_id = misp.add_event(event(resolver, other))

    report = make_fixer(action="delete").run(event_id=event_id)

    gone = misp.attribute(resolver["uuid"])
    assert gone["deleted"] is True
    assert "false-positive" not in tags_of(gone)
    assert fp_sightings(misp, resolver["uuid"]) == []
    live = [a["uuid"] for a in misp.event(event_id)["Attribute"]]
    assert live == [other["uuid"]]
    assert [d.action for d in report.decisions] == ["delete"]
    assert "/sightings/add" not in misp.write_paths()


def test_flags_are_normalised_by_type_and_false_positives_stay_out_of_ids(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    comment = attribute("comment", "seen in campaign x")
    url = attribute("url", "http://evil-updates.top/a.php", correlation_off=True)
    hashed = attribute("sha256", "ab" * 32)
    resolver = attribute("ip-dst", "8.8.8.8", correlation_off=True)
    other = attribute("other", "free text", to_ids=True)
    event_id = misp.add_event(event(comment, url, hashed, resolver, other))

    make_fixer().run(event_id=event_id)

    assert misp.attribute(comment["uuid"])["disable_correlation"] is True
    assert misp.attribute(comment["uuid"])["to_ids"] is False
    for ids in (url, hashed):
        fixed = misp.attribute(ids["uuid"])
        assert (fixed["to_ids"], fixed["disable_correlation"]) == (True, False)
    flagged = misp.attribute(resolver["uuid"])
    assert (flagged["to_ids"], flagged["disable_correlation"]) == (False, False)
    untouched = misp.attribute(other["uuid"])
    assert untouched["timestamp"] == other["timestamp"]
    assert untouched["to_ids"] is True


def test_an_attribute_flagged_earlier_is_never_switched_back_into_ids(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    earlier = attribute("ip-dst", "198.51.100.7", tags=["false-positive"])
    event_id = misp.add_event(event(earlier))

    report = make_fixer().run(event_id=event_id)

    assert misp.attribute(earlier["uuid"])["to_ids"] is False
    assert report.decisions == []
    assert report.planned == []


def test_tlp_white_gains_tlp_clear_once_and_keeps_tlp_white(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    white = misp.add_event(event(tags=("tlp:white",)))
    amber = misp.add_event(event(tags=("tlp:amber",)))
    fixer = make_fixer()

    fixer.run(event_id=white)
    fixer.run(event_id=white)
    fixer.run(event_id=amber)

    assert tags_of(misp.event(white)) == ["tlp:white", "tlp:clear"]
    assert tags_of(misp.event(amber)) == ["tlp:amber"]
    assert misp.write_paths() == ["/tags/attachTagToObject"]


@pytest.mark.parametrize("skipped", ["Partner CERT", "partner cert", OTHER_ORG["uuid"]])
def test_an_event_of_a_skipped_organisation_is_left_alone_and_says_why(
    misp: FakeMisp, make_fixer: MakeFixer, skipped: str
) -> None:
    event_id = misp.add_event(
        event(attribute("ip-dst", "8.8.8.8"), tags=("tlp:white",), org=OTHER_ORG)
    )
    before = misp.event(event_id)

    report = make_fixer(skip_orgs=[skipped]).run(event_id=event_id)

    assert report.outcome == "skipped"
    assert "Partner CERT" in (report.skipped_reason or "")
    assert report.planned == []
    assert misp.writes == []
    assert misp.event(event_id) == before


def test_dry_run_plans_everything_and_writes_nothing(misp: FakeMisp, make_fixer: MakeFixer) -> None:
    event_id = misp.add_event(
        event(
            attribute("ip-dst", "8.8.8.8", to_ids=True),
            attribute("comment", "x"),
            tags=("tlp:white",),
        )
    )
    before = misp.event(event_id)

    report = make_fixer().run(event_id=event_id, dry_run=True)

    kinds = {change.kind for change in report.planned}
    assert {"to_ids", "tag", "sighting", "disable_correlation", "event_tag"} <= kinds
    assert report.applied == []
    assert report.outcome == "planned"
    assert misp.writes == []
    assert report.misp_write_calls == 0
    assert misp.event(event_id) == before


def test_a_second_run_finds_nothing_to_change(misp: FakeMisp, make_fixer: MakeFixer) -> None:
    event_id = misp.add_event(
        event(
            attribute("ip-dst", "8.8.8.8", to_ids=True),
            attribute("hostname", "www.microsoft.com"),
            attribute("ip-dst|port", "203.0.113.5|443"),
            tags=("tlp:white",),
        )
    )
    fixer = make_fixer()
    first = fixer.run(event_id=event_id)
    writes = len(misp.writes)

    second = fixer.run(event_id=event_id)

    assert first.applied
    assert first.outcome == "fixed"
    assert second.planned == []
    assert second.applied == []
    assert second.outcome == "unchanged"
    assert len(second.decisions) == len(first.decisions) == 2
    assert len(misp.writes) == writes


def test_old_attributes_are_outside_the_look_back_window_unless_they_are_edited_anyway(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    # Right flags: nothing to edit, so an old false positive is not judged.
    settled = attribute("ip-dst", "8.8.8.8", to_ids=True, age_days=30)
    # Wrong flags: the edit makes it recent for MISP, so it is judged now, not next run.
    edited = attribute("ip-dst", "8.8.8.8", to_ids=False, correlation_off=True, age_days=30)
    recent = attribute("domain", "amazon.com", to_ids=True, age_days=6)
    event_id = misp.add_event(event(settled, edited, recent))

    report = make_fixer().run(event_id=event_id)

    judged = {d.attribute_uuid for d in report.decisions}
    assert judged == {edited["uuid"], recent["uuid"]}
    assert misp.attribute(settled["uuid"])["timestamp"] == settled["timestamp"]
    wider = make_fixer(lookback_days=60).run(event_id=event_id)
    assert [d.attribute_uuid for d in wider.decisions if d.attribute_uuid == settled["uuid"]]
    assert "false-positive" in tags_of(misp.attribute(settled["uuid"]))


def test_edits_carry_newer_timestamps_even_when_puffins_clock_is_behind_misps(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    url = attribute("url", "http://evil-updates.top/a.php")
    event_id = misp.add_event(event(url))
    fixer = make_fixer()
    behind = datetime.now(UTC) - timedelta(hours=2)
    fixer._clock = lambda: behind  # a host whose clock runs two hours late

    fixer.run(event_id=event_id)

    fixed = misp.attribute(url["uuid"])
    assert fixed["to_ids"] is True
    assert int(fixed["timestamp"]) == int(url["timestamp"]) + 1


def test_unknown_event_unreachable_misp_and_a_wrong_key_are_clear_errors(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    with pytest.raises(EventNotFound, match="no event 999"):
        make_fixer().run(event_id="999")
    with pytest.raises(EventNotFound):
        make_fixer().run(event_id="1 OR 1=1")
    wrong = make_fixer()
    wrong.gateway._key = "not-the-key"
    with pytest.raises(MispRefused, match="refused the API key"):
        wrong.run(event_id="1")
    url = misp.url
    misp.stop()
    with pytest.raises(MispUnavailable, match=f"unreachable at {url}.*refused"):
        make_fixer().run(event_id="1")


def test_the_cyclic_collector_is_held_during_a_run_and_restored_after(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    seen: list[bool] = []

    class Watching:
        def classify(self, items: Any, *, remote_limit: int) -> Any:
            seen.append(gc.isenabled())
            return list_classifier(make_fixer().settings).classify(items, remote_limit=remote_limit)

    event_id = misp.add_event(event(attribute("ip-dst", "8.8.8.8", to_ids=True)))
    assert gc.isenabled()
    assert make_fixer(Watching()).run(event_id=event_id).applied
    assert seen == [False]
    assert gc.isenabled()
    with pytest.raises(EventNotFound):
        make_fixer(Watching()).run(event_id="999")
    assert gc.isenabled()  # also after a run that failed
    gc.disable()
    try:
        make_fixer(Watching()).run(event_id=event_id)
        assert not gc.isenabled()  # a collector the caller held stays held
    finally:
        gc.enable()


def test_misp_down_mid_run_is_a_partial_run_that_a_rerun_finishes(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    from tests.fakes.misp import generate_event

    event_id = misp.add_event(generate_event(400, seed=3))
    fixer = make_fixer(page_size=100)
    misp.go_down_after(2, writes_only=True)

    broken = fixer.run(event_id=event_id)

    assert broken.partial
    assert broken.outcome == "partial"
    assert any("unreachable" in error for error in broken.errors)
    edits = [c for c in misp.writes if c.path.startswith("/events/edit/")]
    assert len(edits) == 2
    sent = sum(len(page.body["Event"]["Attribute"]) for page in edits)
    sent += sum(len(o["Attribute"]) for page in edits for o in page.body["Event"].get("Object", []))
    assert 0 < len({(c.target, c.kind) for c in broken.applied}) < len(broken.planned)
    assert len({c.target for c in broken.applied}) == sent

    misp.restart()
    finished = fixer.run(event_id=event_id)
    assert not finished.partial
    assert finished.applied
    done_before = {(c.target, c.kind) for c in broken.applied}
    assert done_before.isdisjoint((c.target, c.kind) for c in finished.planned)
    assert {c.kind for c in finished.applied} >= {"sighting", "event_tag"}
    assert fixer.run(event_id=event_id).planned == []


def test_sightings_go_in_one_call_scoped_to_this_events_attributes(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    mine = [attribute("ip-dst", "8.8.8.8"), attribute("domain", "cloudflare.com")]
    elsewhere = attribute("ip-dst", "8.8.8.8")
    event_id = misp.add_event(event(*mine))
    misp.add_event(event(elsewhere))

    make_fixer().run(event_id=event_id)

    calls = [c for c in misp.writes if c.path == "/sightings/add"]
    assert len(calls) == 1
    assert sorted(calls[0].body["id"].split("|")) == sorted(
        misp.attribute(a["uuid"])["id"] for a in mine
    )
    assert all(len(fp_sightings(misp, a["uuid"])) == 1 for a in mine)
    assert fp_sightings(misp, elsewhere["uuid"]) == []


def test_correlation_exclusions_are_off_by_default_and_added_once_when_on(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    event_id = misp.add_event(
        event(attribute("ip-dst|port", "8.8.8.8|53"), attribute("domain", "microsoft.com"))
    )
    make_fixer().run(event_id=event_id, dry_run=True)
    make_fixer().run(event_id=event_id)
    assert misp.exclusions() == []

    fixer = make_fixer(add_correlation_exclusions=True)
    first = fixer.run(event_id=event_id)
    second = fixer.run(event_id=event_id)

    assert sorted(misp.exclusions()) == ["8.8.8.8", "microsoft.com"]
    assert [c.target for c in first.applied if c.kind == "correlation_exclusion"]
    assert second.planned == []


def test_the_fixer_leaves_publishing_to_the_workflow(misp: FakeMisp, make_fixer: MakeFixer) -> None:
    event_id = misp.add_event(event(attribute("ip-dst", "8.8.8.8"), tags=("tlp:white",)))

    make_fixer().run(event_id=event_id)

    assert misp.writes
    assert not any("publish" in path for path in misp.write_paths())
    edits = [c.body["Event"] for c in misp.writes if c.path.startswith("/events/edit/")]
    assert edits
    assert all("published" not in body for body in edits)


def test_changes_to_attributes_of_an_object_misp_no_longer_lists_are_skipped_and_reported(
    misp: FakeMisp, make_fixer: MakeFixer
) -> None:
    orphan = attribute("sha1", "ab" * 20)
    url = attribute("url", "http://evil-updates.top/a.php")
    document = event(url)
    document["Event"]["Object"] = [
        {"name": "file", "uuid": str(uuid.uuid4()), "deleted": True, "Attribute": [orphan]}
    ]
    event_id = misp.add_event(document)

    report = make_fixer().run(event_id=event_id)

    assert misp.attribute(url["uuid"])["to_ids"] is True
    assert misp.attribute(orphan["uuid"])["to_ids"] is False
    assert any(orphan["uuid"] in error for error in report.errors)
    assert not report.partial
