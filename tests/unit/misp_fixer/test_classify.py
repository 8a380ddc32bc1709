"""The decision chain: operator's list, then warninglists, then (elsewhere tested) OpenTIP."""

from __future__ import annotations

from typing import Any

import pytest

from puffin.intel.misp_fixer import classify as classify_module
from puffin.intel.misp_fixer.classify import (
    SUPPORTED_TYPES,
    Classification,
    Classifier,
    CommonFalsePositives,
    Verdict,
)
from puffin.intel.misp_fixer.settings import DEFAULT_COMMON_FALSE_POSITIVES, FixerSettings
from puffin.intel.misp_fixer.warninglists import WarninglistIndex

IP_TYPES = ["ip-src", "ip-dst", "domain|ip", "ip-src|port", "ip-dst|port"]
HASH_TYPES = ["md5", "sha1", "sha256", "filename|md5", "filename|sha1", "filename|sha256"]
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def wl(name: str, kind: str, entries: list[str], types: list[str]) -> tuple[str, dict[str, Any]]:
    document = {"name": name, "version": 1, "description": name, "type": kind, "list": entries}
    return name, {**document, "matching_attributes": types}


@pytest.fixture
def warninglists() -> WarninglistIndex:
    return WarninglistIndex.from_documents(
        [
            wl("resolvers", "cidr", ["8.8.8.8/32", "9.9.9.0/24"], IP_TYPES),
            wl("private", "cidr", ["10.0.0.0/8"], IP_TYPES),
            wl("empty files", "string", [EMPTY_MD5], HASH_TYPES),
            wl("top sites", "hostname", ["wikipedia.org"], ["domain", "hostname", "domain|ip"]),
        ]
    )


def classify(classifier: Classifier, *items: tuple[str, str]) -> Classification:
    return classifier.classify(list(items), remote_limit=100)


def test_defaults_are_the_usual_suspects_defined_once_in_the_settings() -> None:
    assert set(DEFAULT_COMMON_FALSE_POSITIVES) == {
        "0.0.0.0",
        "8.8.8.8",
        "google.com",
        "amazon.com",
        "microsoft.com",
        "cloudflare.com",
    }
    defaults = FixerSettings().common_false_positives
    assert defaults == list(DEFAULT_COMMON_FALSE_POSITIVES)
    assert not hasattr(classify_module, "DEFAULT_COMMON_FALSE_POSITIVES")  # no second copy
    classifier = Classifier(common_false_positives=defaults, warninglists=None, opentip=None)
    items = [("ip-dst" if value[0].isdigit() else "domain", value) for value in defaults]
    verdicts = classify(classifier, *items).verdicts
    assert {value: verdicts[(kind, value)].detail for kind, value in items} == {
        value: value for value in defaults
    }


def test_operator_list_matches_exact_values_and_sub_domains_only() -> None:
    common = CommonFalsePositives(["Google.com", "8.8.8.8", "::1", "e3b0c442"])

    assert common.match("google.com") == "Google.com"
    assert common.match("mail.google.com.") == "Google.com"
    assert common.match("evilgoogle.com") is None
    assert common.match("google.com.evil.example") is None
    assert common.match("8.8.8.8") == "8.8.8.8"
    assert common.match("8.8.8.88") is None
    assert common.match("0:0:0:0:0:0:0:1") == "::1"
    assert common.match("E3B0C442") == "e3b0c442"


def test_the_chain_stops_at_the_first_verdict(warninglists: WarninglistIndex) -> None:
    classifier = Classifier(
        common_false_positives=DEFAULT_COMMON_FALSE_POSITIVES,
        warninglists=warninglists,
        opentip=None,
    )

    result = classify(
        classifier,
        ("ip-dst", "8.8.8.8"),  # on both lists: the operator's wins
        ("ip-dst", "9.9.9.9"),
        ("domain", "www.microsoft.com"),
        ("hostname", "en.wikipedia.org"),
        ("md5", EMPTY_MD5.upper()),
        ("domain", "attacker.example"),
    )

    assert result.verdicts == {
        ("ip-dst", "8.8.8.8"): Verdict("list", "8.8.8.8"),
        ("ip-dst", "9.9.9.9"): Verdict("warninglist", "resolvers"),
        ("domain", "www.microsoft.com"): Verdict("list", "microsoft.com"),
        ("hostname", "en.wikipedia.org"): Verdict("warninglist", "top sites"),
        ("md5", EMPTY_MD5.upper()): Verdict("warninglist", "empty files"),
    }
    assert (result.lookups, result.cached, result.not_looked_up, result.errors) == (0, 0, 0, [])


def test_composites_are_judged_on_their_indicator_parts(warninglists: WarninglistIndex) -> None:
    classifier = Classifier(
        common_false_positives=["google.com"], warninglists=warninglists, opentip=None
    )

    result = classify(
        classifier,
        ("ip-src|port", "10.1.2.3|445"),
        ("ip-dst|port", "192.0.2.1|8"),  # "8" is a port, not 8.8.8.8
        ("domain|ip", "maps.google.com|192.0.2.7"),
        ("domain|ip", "attacker.example|9.9.9.9"),
        ("filename|md5", f"empty.txt|{EMPTY_MD5}"),
        ("filename|sha256", "google.com|" + "f" * 64),  # a file named google.com is no domain
    )

    assert result.verdicts == {
        ("ip-src|port", "10.1.2.3|445"): Verdict("warninglist", "private"),
        ("domain|ip", "maps.google.com|192.0.2.7"): Verdict("list", "google.com"),
        ("domain|ip", "attacker.example|9.9.9.9"): Verdict("warninglist", "resolvers"),
        ("filename|md5", f"empty.txt|{EMPTY_MD5}"): Verdict("warninglist", "empty files"),
    }


def test_types_outside_the_supported_set_get_no_verdict(warninglists: WarninglistIndex) -> None:
    classifier = Classifier(
        common_false_positives=["google.com", "8.8.8.8"], warninglists=warninglists, opentip=None
    )

    result = classify(
        classifier,
        ("url", "https://google.com/"),
        ("email-src", "someone@google.com"),
        ("text", "8.8.8.8"),
        ("domain", "google.com"),
    )

    assert result.verdicts == {("domain", "google.com"): Verdict("list", "google.com")}
    assert {"domain|ip", "ip-src|port", "filename|sha1", "hostname"} <= SUPPORTED_TYPES


def test_several_warninglists_are_named_together_and_duplicates_judged_once() -> None:
    both = WarninglistIndex.from_documents(
        [wl("a", "cidr", ["10.0.0.0/8"], IP_TYPES), wl("b", "cidr", ["10.9.0.0/16"], IP_TYPES)]
    )
    classifier = Classifier(common_false_positives=[], warninglists=both, opentip=None)

    result = classify(classifier, ("ip-dst", "10.9.9.9"), ("ip-dst", "10.9.9.9"))

    assert result.verdicts == {("ip-dst", "10.9.9.9"): Verdict("warninglist", "a, b")}


def test_without_warninglists_or_opentip_only_the_operator_list_decides() -> None:
    classifier = Classifier(common_false_positives=["0.0.0.0"], warninglists=None, opentip=None)

    result = classify(classifier, ("ip-dst", "0.0.0.0"), ("ip-dst", "10.0.0.1"))

    assert result.verdicts == {("ip-dst", "0.0.0.0"): Verdict("list", "0.0.0.0")}
