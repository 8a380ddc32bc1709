"""The planner and the edit bodies, on plain MISP JSON (no server): what MISP will be sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from puffin.core.settings import Settings
from puffin.intel.misp_fixer import edits, plan
from puffin.intel.misp_fixer.settings import FixerSettings

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
RECENT = str(int((NOW - timedelta(hours=1)).timestamp()))


@dataclass(frozen=True)
class Verdict:
    source: str
    detail: str


def attribute(number: int, kind: str, value: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": str(number),
        "uuid": f"00000000-0000-4000-8000-{number:012d}",
        "type": kind,
        "value": value,
        "category": "Network activity",
        "to_ids": False,
        "disable_correlation": False,
        "timestamp": RECENT,
        "object_id": "0",
        **fields,
    }


def snapshot(*attributes: dict[str, Any], tags: tuple[str, ...] = ()) -> plan.EventSnapshot:
    return plan.EventSnapshot(
        id="5",
        uuid="5e5e5e5e-0000-4000-8000-000000000005",
        info="test",
        org_name="CIRCL",
        org_uuid="55f6ea5e-2c60-40e5-964f-47a8950d210f",
        tags=tags,
        attributes=list(attributes),
    )


def test_candidates_are_distinct_judged_types_within_the_window() -> None:
    old = str(int((NOW - timedelta(days=8)).timestamp()))
    event = snapshot(
        attribute(1, "ip-dst", "8.8.8.8", to_ids=True),
        attribute(2, "ip-dst", "8.8.8.8", to_ids=True),
        attribute(3, "url", "http://x.top/a"),
        attribute(4, "domain", "old.example", to_ids=True, timestamp=old),
        attribute(5, "sha256", "ab" * 32, deleted=True),
    )

    found = plan.candidates(event, settings=FixerSettings(), now=NOW)

    assert found == [("ip-dst", "8.8.8.8")]


def test_a_composite_value_is_excluded_by_its_indicator_parts() -> None:
    assert plan.exclusion_values(attribute(1, "ip-dst|port", "8.8.8.8|53")) == ["8.8.8.8"]
    assert plan.exclusion_values(attribute(1, "filename|sha256", "a.exe|" + "c" * 64)) == ["c" * 64]
    assert plan.exclusion_values(attribute(1, "domain|ip", "x.top|1.2.3.4")) == ["x.top", "1.2.3.4"]


def test_a_flagged_attribute_keeps_its_tags_and_gains_a_newer_timestamp() -> None:
    tagged = attribute(
        1,
        "ip-dst",
        "8.8.8.8",
        to_ids=True,
        Tag=[{"name": "tlp:green", "local": 0}, {"name": "team:a", "local": 1}],
    )
    the_plan = plan.build_plan(
        snapshot(tagged),
        verdicts={("ip-dst", "8.8.8.8"): Verdict("list", "8.8.8.8")},
        settings=FixerSettings(),
        now=NOW,
    )

    [page] = edits.edit_pages(the_plan, objects={}, now=NOW, page_size=100)

    [sent] = page.body["Event"]["Attribute"]
    assert sent["to_ids"] is False
    assert sent["Tag"] == [
        {"name": "tlp:green", "local": False},
        {"name": "team:a", "local": True},
        {"name": "false-positive"},
    ]
    assert int(sent["timestamp"]) == int(NOW.timestamp())
    assert "published" not in page.body["Event"]


def test_an_objects_changes_stay_in_one_page_with_a_bumped_object_timestamp() -> None:
    object_meta = {"id": "9", "uuid": "0b1ec700-0000-4000-8000-000000000009", "name": "file"}
    object_meta["timestamp"] = str(int(NOW.timestamp()) + 50)  # MISP's clock is ahead
    top = [attribute(n, "url", f"http://x{n}.top/") for n in range(1, 4)]
    inside = [attribute(n, "sha1", f"{n:040x}", object_id="9") for n in range(4, 7)]
    the_plan = plan.build_plan(
        snapshot(top[0], inside[0], top[1], inside[1], top[2], inside[2]),
        verdicts={},
        settings=FixerSettings(),
        now=NOW,
    )

    pages = edits.edit_pages(the_plan, objects={"9": object_meta}, now=NOW, page_size=2)

    objects = [o for page in pages for o in page.body["Event"].get("Object", [])]
    assert len(objects) == 1
    assert [a["uuid"] for a in objects[0]["Attribute"]] == [a["uuid"] for a in inside]
    assert int(objects[0]["timestamp"]) == int(object_meta["timestamp"]) + 1
    assert sum(len(page.body["Event"]["Attribute"]) for page in pages) == 3


def test_skip_reason_matches_the_creator_organisation_by_name_or_uuid() -> None:
    event = snapshot()
    assert plan.skip_reason(event, FixerSettings(skip_orgs=["circl"])) is not None
    assert plan.skip_reason(event, FixerSettings(skip_orgs=[event.org_uuid.upper()])) is not None
    assert plan.skip_reason(event, FixerSettings(skip_orgs=["CIRCL-2"])) is None


def test_settings_have_the_issues_defaults_and_refuse_contradictions() -> None:
    settings = FixerSettings()
    assert settings.lookback_days == 7
    assert settings.max_attributes == 4000
    assert settings.action == "flag"
    assert settings.add_correlation_exclusions is False
    assert "8.8.8.8" in settings.common_false_positives
    assert len(settings.ids_types) == 35
    assert len(settings.non_correlating_types) == 20
    with pytest.raises(ValidationError, match="both IDS and non-correlating"):
        FixerSettings(non_correlating_types=["comment", "url"])
    with pytest.raises(ValidationError, match="Grey"):
        FixerSettings(opentip_benign_zones=["Green", "Grey"])
    with pytest.raises(ValidationError, match="https://"):
        FixerSettings(misp_url="misp.example.org")


def test_empty_values_mean_unset_and_zones_are_spelled_as_opentip_does() -> None:
    blank = FixerSettings(misp_url=" ", misp_key="", opentip_api_key="")
    assert (blank.misp_url, blank.misp_key, blank.opentip_api_key) == (None, None, None)
    assert FixerSettings(opentip_benign_zones=["green", " Yellow"]).opentip_benign_zones == [
        "Green",
        "Yellow",
    ]
    with pytest.raises(ValidationError, match="unknown OpenTIP zones 'Blue'"):
        FixerSettings(opentip_benign_zones=["Green", "Blue"])
    with pytest.raises(ValidationError, match="Grey"):
        FixerSettings(opentip_benign_zones=["grey"])


def test_lists_from_the_environment_reach_the_fixer_through_puffins_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUFFIN_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("PUFFIN_MISP_FIXER__SKIP_ORGS", '["CIRCL", "Partner CERT"]')
    monkeypatch.setenv("PUFFIN_MISP_FIXER__WARNINGLISTS_INCLUDE", "[]")
    monkeypatch.setenv("PUFFIN_MISP_FIXER__MAX_ATTRIBUTES", "250")

    fixer = FixerSettings.model_validate(Settings(data_dir=tmp_path).misp_fixer)

    assert fixer.skip_orgs == ["CIRCL", "Partner CERT"]
    assert fixer.warninglists_include == []
    assert fixer.max_attributes == 250
    with pytest.raises(ValidationError, match="not a JSON list"):
        FixerSettings.model_validate({"skip_orgs": '["CIRCL"'})
