"""The warninglist index: sub-domains, CIDR blocks, types, composites, selection, real lists."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path
from typing import Any

import pytest

from puffin.intel.misp_fixer.warninglists import (
    CONTEXT_LISTS,
    WarninglistIndex,
    relevant_parts,
)

IP_TYPES = ["ip-src", "ip-dst", "domain|ip", "ip-src|port", "ip-dst|port"]
DOMAIN_TYPES = ["domain", "hostname", "domain|ip", "url"]


def wl(name: str, kind: str, entries: list[str], types: list[str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": name,
        "description": f"test list {name}",
        "version": 1,
        "type": kind,
        "list": entries,
    }
    if types is not None:
        document["matching_attributes"] = types
    return document


def index(*documents: dict[str, Any], **selection: Any) -> WarninglistIndex:
    return WarninglistIndex.from_documents(
        [(document["name"], document) for document in documents], **selection
    )


# --- sub-domains ---------------------------------------------------------------------------


def test_hostname_list_matches_the_domain_and_its_sub_domains_only() -> None:
    sites = index(wl("sites", "hostname", ["google.com", ".example.org"], DOMAIN_TYPES))

    assert sites.match("google.com") == ["sites"]
    assert sites.match("a.b.google.com") == ["sites"]
    assert sites.match("WWW.Google.COM.") == ["sites"]
    assert sites.match("deep.example.org") == ["sites"]
    assert sites.match("evilgoogle.com") == []
    assert sites.match("google.com.evil.net") == []
    assert sites.match("google.co") == []


def test_urls_and_addresses_with_ports_are_matched_on_their_host() -> None:
    sites = index(wl("sites", "hostname", ["google.com"], DOMAIN_TYPES))

    assert sites.match_attribute("url", "https://mail.google.com/mail/u/0") == ["sites"]
    assert sites.match_attribute("url", "https://google.com.attacker.io/login") == []
    assert sites.match_attribute("hostname|port", "mail.google.com|443") == []  # type not covered
    assert sites.match("mail.google.com:8443") == ["sites"]


def test_sub_domain_matching_stops_at_a_public_suffix() -> None:
    # github.io is a public suffix: each user site under it belongs to someone else.
    psl = wl("second-level-tlds", "string", ["github.io", "co.uk"], DOMAIN_TYPES)
    top = wl("top sites", "hostname", ["github.io", "bbc.co.uk", "example.co.uk"], DOMAIN_TYPES)
    vendor = wl("vendor", "string", [".github.io", ".example.co.uk"], DOMAIN_TYPES)
    lists = index(psl, top, vendor, include=["top sites", "vendor"])

    assert lists.match("github.io") == ["top sites", "vendor"]
    assert lists.match("evil.github.io") == []
    assert lists.match("news.bbc.co.uk") == ["top sites"]
    assert lists.match("login.example.co.uk") == ["top sites", "vendor"]
    assert [item.name for item in lists.lists] == ["top sites", "vendor"]


def test_string_lists_are_exact_and_a_leading_dot_means_any_sub_domain() -> None:
    tlds = wl("tlds", "string", ["COM", "NET"], DOMAIN_TYPES)
    vendor = wl("vendor", "string", [".azure.com", "login.live.com"], DOMAIN_TYPES)
    lists = index(tlds, vendor, include=["vendor", "tlds"])

    assert lists.match("com") == ["tlds"]
    assert lists.match("example.com") == []  # a TLD list must not swallow every domain
    assert lists.match("portal.azure.com") == ["vendor"]
    assert lists.match("azure.com") == ["vendor"]
    assert lists.match("notazure.com") == []
    assert lists.match("login.live.com") == ["vendor"]
    assert lists.match("x.login.live.com") == []


def test_substring_lists_match_whole_labels_not_arbitrary_text() -> None:
    sandboxes = index(wl("sandboxes", "substring", ["sandbox.com"], DOMAIN_TYPES))

    assert sandboxes.match("app.sandbox.com") == ["sandboxes"]
    assert sandboxes.match("mysandbox.com") == []


# --- addresses -----------------------------------------------------------------------------


def test_ipv4_blocks_and_single_addresses_overlapping_across_lists() -> None:
    private = wl("private", "cidr", ["10.0.0.0/8"], IP_TYPES)
    lab = wl("lab", "cidr", ["10.1.0.0/16", "192.168.1.1"], IP_TYPES)
    lists = index(private, lab)

    assert lists.match("10.1.2.3") == ["lab", "private"]
    assert lists.match("10.2.0.1") == ["private"]
    assert lists.match("10.255.255.255") == ["private"]
    assert lists.match("11.0.0.0") == []
    assert lists.match("9.255.255.255") == []
    assert lists.match("192.168.1.1") == ["lab"]
    assert lists.match("192.168.1.2") == []
    assert lists.match("10.1.0.0/24") == ["lab", "private"]  # a block inside both
    assert lists.match("10.0.0.0/7") == []  # a block larger than any list entry


def test_ipv6_blocks_do_not_leak_into_ipv4_and_back() -> None:
    v6 = wl("v6", "cidr", ["2001:db8::/32", "fe80::/10"], IP_TYPES)
    v4 = wl("v4", "cidr", ["10.1.2.0/24"], IP_TYPES)
    lists = index(v6, v4)

    assert lists.match("2001:db8:ffff::1") == ["v6"]
    assert lists.match("2001:DB8::") == ["v6"]
    assert lists.match("2001:db9::1") == []
    assert lists.match("fe80::1") == ["v6"]
    # ::a01:203 has the same integer value as 10.1.2.3, but is another address family.
    assert lists.match("::a01:203") == []
    assert lists.match("10.1.2.3") == ["v4"]


def test_interval_index_agrees_with_a_naive_scan_of_every_network() -> None:
    rng = random.Random(7)
    networks: dict[str, list[ipaddress.IPv4Network]] = {f"list{n}": [] for n in range(5)}
    for name in networks:
        for _ in range(60):
            prefix = rng.randint(8, 32)
            address = ipaddress.IPv4Address(rng.getrandbits(32) & 0xC0FFFFFF)
            networks[name].append(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
    lists = index(*(wl(name, "cidr", [str(n) for n in nets]) for name, nets in networks.items()))

    probes = [ipaddress.IPv4Address(rng.getrandbits(32) & 0xC0FFFFFF) for _ in range(3000)]
    probes += [n.network_address for nets in networks.values() for n in nets]
    probes += [n.broadcast_address for nets in networks.values() for n in nets]
    for probe in probes:
        expected = sorted(name for name, nets in networks.items() if any(probe in n for n in nets))
        assert lists.match(str(probe)) == expected, probe


# --- attribute types and composites -------------------------------------------------------


def test_matching_attributes_limit_which_types_a_list_answers_for() -> None:
    scanners = wl("scanners", "cidr", ["198.51.100.0/24"], ["ip-src"])
    everything = wl("everything", "cidr", ["198.51.100.7"])  # no matching_attributes: all
    lists = index(scanners, everything)

    assert lists.match_attribute("ip-src", "198.51.100.7") == ["everything", "scanners"]
    assert lists.match_attribute("ip-dst", "198.51.100.7") == ["everything"]
    assert lists.match("198.51.100.7") == ["everything", "scanners"]  # no type: every list


def test_composites_are_checked_on_the_parts_that_carry_the_indicator() -> None:
    resolvers = wl("resolvers", "cidr", ["8.8.8.8"], IP_TYPES)
    ports = wl("ports", "string", ["443", "google.com"], [*IP_TYPES, "filename|sha256"])
    empty = wl("empty", "string", ["E3B0C442"], ["sha256", "filename|sha256"])
    lists = index(resolvers, ports, empty)

    assert lists.match_attribute("ip-dst|port", "8.8.8.8|443") == ["resolvers"]
    assert lists.match_attribute("ip-dst|port", "192.0.2.1|443") == []  # the port is no indicator
    assert lists.match_attribute("domain|ip", "evil.example|8.8.8.8") == ["resolvers"]
    assert lists.match_attribute("filename|sha256", "google.com|e3b0c442") == ["empty"]
    assert lists.match_attribute("filename|sha256", "a|b.exe|e3b0c442") == ["empty"]


def test_relevant_parts_of_misp_types() -> None:
    assert relevant_parts("ip-src|port", "2001:db8::1|8080") == ["2001:db8::1"]
    assert relevant_parts("domain|ip", "example.com|192.0.2.1") == ["example.com", "192.0.2.1"]
    assert relevant_parts("filename|md5", "setup.exe|abc") == ["abc"]
    assert relevant_parts("malware-sample", "x.zip|abc") == ["abc"]
    assert relevant_parts("domain", "a|b") == ["a|b"]


def test_regex_lists_answer_for_their_own_types() -> None:
    contacts = wl("contacts", "regex", ["/^(abuse|noc)@/i", "/(unclosed/"], ["email-src"])
    lists = index(contacts)

    assert lists.match_attribute("email-src", "Abuse@example.org") == ["contacts"]
    assert lists.match_attribute("email-src", "ceo@example.org") == []
    assert lists.match_attribute("domain", "abuse@example.org") == []
    assert any("contacts" in error and "regex" in error for error in lists.errors)


# --- selection and loading ----------------------------------------------------------------


def test_selection_by_key_or_name_with_exclusions_and_unknown_names_reported() -> None:
    documents = [
        ("rfc1918", wl("List of RFC 1918 CIDR blocks", "cidr", ["10.0.0.0/8"])),
        ("rfc5735", wl("List of RFC 5735 CIDR blocks", "cidr", ["10.0.0.0/8"])),
        ("dynamic-dns", wl("List of known dynamic DNS domains", "hostname", ["no-ip.biz"])),
    ]
    everything = WarninglistIndex.from_documents(documents, include=["*"], exclude=())
    default = WarninglistIndex.from_documents(documents)
    picked = WarninglistIndex.from_documents(
        documents, include=["rfc1918", "List of RFC 5735 CIDR blocks", "nope"], exclude=["rfc5735"]
    )

    assert everything.match("a.no-ip.biz") == ["List of known dynamic DNS domains"]
    assert default.match("a.no-ip.biz") == []  # context lists are left out unless asked for
    assert "dynamic-dns" in CONTEXT_LISTS
    assert picked.match("10.0.0.1") == ["List of RFC 1918 CIDR blocks"]
    assert picked.errors == ("unknown warninglist 'nope'",)


def test_local_folder_in_the_upstream_layout_with_a_broken_list(tmp_path: Path) -> None:
    for key, document in {
        "mine": wl("My resolvers", "cidr", ["203.0.113.53"], IP_TYPES),
        "names": wl("My domains", "hostname", ["corp.example"], DOMAIN_TYPES),
    }.items():
        (tmp_path / "lists" / key).mkdir(parents=True)
        (tmp_path / "lists" / key / "list.json").write_text(json.dumps(document))
    (tmp_path / "lists" / "broken").mkdir()
    (tmp_path / "lists" / "broken" / "list.json").write_text("{not json")

    from_root = WarninglistIndex.load(tmp_path)
    from_lists = WarninglistIndex.load(tmp_path / "lists", include=["mine"])

    assert from_root.match_attribute("ip-dst|port", "203.0.113.53|53") == ["My resolvers"]
    assert from_root.match_attribute("hostname", "vpn.corp.example") == ["My domains"]
    assert len(from_root.errors) == 1
    assert "broken" in from_root.errors[0]
    assert [item.key for item in from_lists.lists] == ["mine"]


def test_a_folder_without_lists_is_reported_not_silently_empty(tmp_path: Path) -> None:
    nothing = WarninglistIndex.load(tmp_path)

    assert nothing.lists == ()
    assert len(nothing.errors) == 1
    assert "no <name>/list.json" in nothing.errors[0]


# --- the lists shipped with pymispwarninglists --------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> WarninglistIndex:
    chosen = ["public-dns-v4", "public-dns-v6", "rfc1918", "ipv6-linklocal", "empty-hashes"]
    chosen += ["google", "microsoft", "tranco", "dynamic-dns", "amazon-aws"]
    return WarninglistIndex.load(include=chosen, exclude=())


def test_shipped_lists_know_public_resolvers_private_ranges_and_empty_files(
    shipped: WarninglistIndex,
) -> None:
    assert shipped.errors == ()
    dns_v4 = "List of known IPv4 public DNS resolvers"
    assert shipped.match_attribute("ip-dst", "8.8.8.8") == [dns_v4]
    assert shipped.match_attribute("ip-src|port", "1.1.1.1|53") == [dns_v4]
    assert shipped.match_attribute("ip-dst", "2001:4860:4860::8888") == [
        "List of known IPv6 public DNS resolvers"
    ]
    assert shipped.match_attribute("ip-dst", "192.168.10.20") == ["List of RFC 1918 CIDR blocks"]
    assert shipped.match_attribute("ip-src", "fe80::1") == ["List of IPv6 link local blocks"]
    empty_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert shipped.match_attribute("sha256", empty_sha256.upper()) == [
        "List of known hashes for empty files"
    ]
    assert shipped.match_attribute("filename|md5", "empty.txt|d41d8cd98f00b204e9800998ecf8427e")


def test_shipped_domain_lists_vouch_for_their_owners_not_for_hosted_sites(
    shipped: WarninglistIndex,
) -> None:
    google = "List of known google domains"
    assert google in shipped.match_attribute("domain", "www.google.de")
    assert "List of known microsoft domains" in shipped.match_attribute("hostname", "azure.com")
    # Tranco and the Microsoft list name azurewebsites.net, github.io and duckdns.org; sites
    # hosted under those public suffixes are customers', not the platform's.
    assert shipped.match_attribute("domain", "github.io") != []
    assert shipped.match_attribute("domain", "evil.github.io") == []
    assert shipped.match_attribute("domain", "evil.azurewebsites.net") == []
    assert shipped.match_attribute("domain", "c2.duckdns.org") == []
    assert shipped.match_attribute("domain", "evilgoogle.com") == []
