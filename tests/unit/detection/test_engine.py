"""The Sigma engine over plain dict events: every modifier, the condition grammar, the index."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection

from puffin.detection.engine.compiler import compile_rule
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import RuleCache, load_rules

SYSMON = "Microsoft-Windows-Sysmon/Operational"


def engine(detection: str, *, logsource: str = "", placeholders=None) -> RuleSet:
    text = textwrap.dedent(
        """
        title: Test rule
        id: 5f0b4d0e-0000-4000-8000-000000000001
        level: high
        tags: [attack.execution, attack.t1059]
        logsource:
        {logsource}
        detection:
        {detection}
        """
    ).format(
        logsource=textwrap.indent(textwrap.dedent(logsource) or "product: test", "    "),
        detection=textwrap.indent(textwrap.dedent(detection), "    "),
    )
    rule = SigmaCollection.from_yaml(text).rules[0]
    return RuleSet([compile_rule(rule, placeholders=placeholders)])


def fires(ruleset: RuleSet, **event: Any) -> bool:
    event.setdefault("logsource_product", "test")
    return bool(ruleset.evaluate(event))


def test_plain_values_match_whole_values_case_insensitively():
    rules = engine("sel:\n  Image: 'C:\\Windows\\cmd.exe'\ncondition: sel")
    assert fires(rules, Image="c:\\windows\\CMD.EXE")
    assert not fires(rules, Image="c:\\windows\\cmd.exe.bak")
    assert not fires(rules, Other="c:\\windows\\cmd.exe")


@pytest.mark.parametrize(
    ("modifier", "value", "yes", "no"),
    [
        ("contains", "mimikatz", "run MimiKatz now", "mimi katz"),
        ("startswith", "powershell", "PowerShell -enc", "xpowershell"),
        ("endswith", "\\whoami.exe", "C:\\W\\WHOAMI.EXE", "whoami.exe.txt"),
        ("contains|cased", "Invoke-", "x Invoke-Thing", "x invoke-thing"),
    ],
)
def test_string_modifiers(modifier, value, yes, no):
    rules = engine(f"sel:\n  CommandLine|{modifier}: '{value}'\ncondition: sel")
    assert fires(rules, CommandLine=yes)
    assert not fires(rules, CommandLine=no)


def test_lists_are_alternatives_and_all_requires_every_value():
    any_of = engine("sel:\n  CommandLine|contains: [' -enc ', ' -e ']\ncondition: sel")
    every = engine("sel:\n  CommandLine|contains|all: [' -nop ', ' -w hidden ']\ncondition: sel")
    assert fires(any_of, CommandLine="ps -e x")
    assert fires(every, CommandLine="ps -nop  -w hidden x")
    assert not fires(every, CommandLine="ps -nop x")


def test_wildcards_and_escapes():
    # In Sigma a backslash before a wildcard escapes it, so `\\*` is a backslash then `*`.
    rules = engine("sel:\n  Path: 'C:\\Users\\\\*\\AppData\\\\?oo.exe'\ncondition: sel")
    assert fires(rules, Path="c:\\users\\bob\\appdata\\foo.exe")
    assert not fires(rules, Path="c:\\users\\bob\\appdata\\fooo.exe")
    literal = engine("sel:\n  Name: 'what\\*'\ncondition: sel")
    assert fires(literal, Name="what*")
    assert not fires(literal, Name="whatever")


def test_regular_expressions_with_flags():
    cased = engine("sel:\n  CommandLine|re: 'Get-[A-Z]+Token'\ncondition: sel")
    ignore = engine("sel:\n  CommandLine|re|i: 'get-[a-z]+token'\ncondition: sel")
    assert fires(cased, CommandLine="x Get-ADToken y")
    assert not fires(cased, CommandLine="x get-adtoken y")
    assert fires(ignore, CommandLine="x GET-ADTOKEN y")
    dotall = engine("sel:\n  Script|re|s: 'begin.+end'\ncondition: sel")
    assert fires(dotall, Script="begin\nmiddle\nend")


def test_a_case_sensitive_regular_expression_is_reached_through_its_plain_characters():
    # The index looks for the longest run of plain characters at the top level, lower-cased.
    home = engine("sel:\n  CommandLine|re: '\\$PSHome\\[\\s*\\d{1,3}\\s*\\]'\ncondition: sel")
    [rule] = home.rules
    assert rule.literals == (("CommandLine", "$pshome["),)
    assert fires(home, CommandLine="iex ($PSHome[ 21 ]+$PSHome[30])")
    assert fires(home, CommandLine=["cmd", "x $PSHome[4]"])
    assert not fires(home, CommandLine="iex ($pshome[21])")  # the expression is case-sensitive
    assert not fires(home, CommandLine="iex $PSHome.x")
    # No such run, or letters of any case: the rule runs for every event it may apply to.
    for detection in (
        "CommandLine|re: '(?i)\\$PSHome\\['",
        "CommandLine|re|i: 'PSHome'",
        "CommandLine|re: 'PSH(ome|ell)|xyz'",
        "CommandLine|re: 'a.?b+c'",
    ):
        [rule] = engine(f"sel:\n  {detection}\ncondition: sel").rules
        assert rule.literals is None, detection
    ignore = engine("sel:\n  CommandLine|re: '(?i)\\$PSHome\\['\ncondition: sel")
    assert fires(ignore, CommandLine="iex $pshome[1]")


def test_cidr():
    rules = engine("sel:\n  DestinationIp|cidr: ['10.0.0.0/8', 'fd00::/8']\ncondition: sel")
    assert fires(rules, DestinationIp="10.1.2.3")
    assert fires(rules, DestinationIp="fd00::1")
    assert not fires(rules, DestinationIp="11.0.0.1")
    assert not fires(rules, DestinationIp="not an address")


def test_windash_matches_every_dash_form():
    rules = engine("sel:\n  CommandLine|windash|contains: ' -exec bypass'\ncondition: sel")
    for dash in ("-", "/", "\u2013", "\u2014", "\u2015"):
        assert fires(rules, CommandLine=f"ps {dash}exec bypass"), dash
    assert not fires(rules, CommandLine="ps +exec bypass")


def test_base64_and_base64offset():
    plain = engine("sel:\n  CommandLine|base64: 'http://'\ncondition: sel")
    encoded = base64.b64encode(b"http://").decode()
    assert fires(plain, CommandLine=encoded)
    offset = engine("sel:\n  CommandLine|base64offset|contains: 'IEX'\ncondition: sel")
    for prefix in (b"", b"a", b"ab"):
        blob = base64.b64encode(prefix + b"IEX (New-Object)").decode()
        assert fires(offset, CommandLine=f"-enc {blob}"), prefix


def test_wide_encodes_utf16le_before_base64():
    rules = engine("sel:\n  CommandLine|wide|base64offset|contains: 'ping'\ncondition: sel")
    blob = base64.b64encode("ping 127.0.0.1".encode("utf-16le")).decode()
    assert fires(rules, CommandLine=blob)


def test_exists_null_and_empty():
    exists = engine("sel:\n  Token|exists: true\ncondition: sel")
    absent = engine("sel:\n  Token|exists: false\ncondition: sel")
    null = engine("sel:\n  Token: null\ncondition: sel")
    assert fires(exists, Token="x")
    assert not fires(exists, Other=1)
    assert fires(absent, Other=1)
    assert not fires(absent, Token="x")
    assert fires(null, Token="")
    assert fires(null, Other=1)
    assert not fires(null, Token="x")


def test_fieldref_and_numeric_comparisons():
    same = engine("sel:\n  SourceUser|fieldref: TargetUser\ncondition: sel")
    assert fires(same, SourceUser="Bob", TargetUser="bob")
    assert not fires(same, SourceUser="bob", TargetUser="alice")
    big = engine("sel:\n  Size|gte: 1000\nsmall:\n  Size|lt: 10\ncondition: sel or small")
    assert fires(big, Size=1000)
    assert fires(big, Size="5")
    assert not fires(big, Size=500)
    assert not fires(big, Size="many")


def test_numbers_and_booleans_match_their_text():
    rules = engine("sel:\n  EventID: 4688\n  Elevated: true\ncondition: sel")
    assert fires(rules, EventID=4688, Elevated=True)
    assert fires(rules, EventID="4688", Elevated="true")
    assert not fires(rules, EventID=4689, Elevated=True)


def test_expand_uses_placeholders_from_configuration():
    rule = "sel:\n  User|expand: '%admins%'\ncondition: sel"
    rules = engine(rule, placeholders={"admins": ["root", "admin"]})
    assert fires(rules, User="ROOT")
    assert not fires(rules, User="bob")
    unresolved = engine(rule)
    assert not fires(unresolved, User="root")
    assert unresolved.rules[0].warnings


def test_keywords_search_every_value():
    rules = engine("keywords:\n  - 'reverse shell'\n  - 'nc -e'\ncondition: keywords")
    assert fires(rules, message="possible Reverse Shell here")
    assert fires(rules, a=1, b=["x", "run nc -e /bin/sh"])
    assert not fires(rules, message="nothing")


def test_keywords_are_found_in_numbers_nested_values_and_remembered_values():
    rules = engine("keywords:\n  - 'sekurlsa::'\n  - '4242'\ncondition: keywords")
    assert fires(rules, EventID=4242)  # a number, as its text
    assert fires(rules, data={"cmd": "SEKURLSA::logonpasswords"})  # a nested value, as text
    # The same values again, now remembered: still found, and still not elsewhere.
    for _ in range(2):
        assert fires(rules, Image="C:\\mimi.exe", CommandLine="sekurlsa::pth")
        assert not fires(rules, Image="C:\\mimi.exe", CommandLine="whoami")
    long_value = "x" * 1000 + " sekurlsa:: " + "y" * 1000  # too long to remember
    assert fires(rules, CommandLine=long_value)
    assert fires(rules, CommandLine=long_value)


def test_a_keyword_with_a_new_line_still_matches_across_values():
    # The joined text puts each value on its own line; such a keyword is searched there.
    rules = engine('keywords:\n  - "first\\nsecond"\ncondition: keywords')
    assert fires(rules, a="the first", b="second one")
    assert not fires(rules, a="the first", b="third")


def test_list_values_match_when_any_element_does():
    rules = engine("sel:\n  paths|endswith: '/shadow'\ncondition: sel")
    assert fires(rules, paths=["/etc/passwd", "/etc/shadow"])
    assert not fires(rules, paths=["/etc/passwd"])


def test_condition_grammar():
    detection = """
    selection_a:
      A: 'a'
    selection_b:
      B: 'b'
    filter:
      C: 'c'
    condition: (1 of selection_* and not filter) or all of them
    """
    rules = engine(detection)
    assert fires(rules, A="a")
    assert fires(rules, B="b")
    assert not fires(rules, A="a", C="c")
    assert fires(rules, A="a", B="b", C="c")
    all_sel = engine(
        detection.replace(
            "condition: (1 of selection_* and not filter) or all of them",
            "condition: all of selection_*",
        )
    )
    assert not fires(all_sel, A="a")
    assert fires(all_sel, A="a", B="b")


def test_neq_negates_a_field_test():
    rules = engine("sel:\n  Status|neq: 'ok'\n  Name: x\ncondition: sel")
    assert fires(rules, Status="failed", Name="x")
    assert not fires(rules, Status="OK", Name="x")


def test_nested_fields_by_dotted_name():
    rules = engine("sel:\n  request.user.name: admin\ncondition: sel")
    assert fires(rules, request={"user": {"name": "Admin"}})


def test_logsources_select_events_and_alias_fields():
    rules = engine(
        "sel:\n  Image|endswith: '\\whoami.exe'\ncondition: sel",
        logsource="category: process_creation\nproduct: windows",
    )
    sysmon = {"Channel": SYSMON, "EventID": 1, "Image": "C:\\x\\whoami.exe"}
    security = {"Channel": "Security", "EventID": 4688, "NewProcessName": "C:\\x\\whoami.exe"}
    other = {"Channel": SYSMON, "EventID": 3, "Image": "C:\\x\\whoami.exe"}
    assert rules.evaluate(sysmon)
    assert rules.evaluate(security)
    assert not rules.evaluate(other)


def test_an_unmapped_logsource_applies_to_events_that_name_it():
    rules = engine(
        "sel:\n  eventName: ConsoleLogin\ncondition: sel",
        logsource="product: aws\nservice: cloudtrail",
    )
    assert rules.unmapped
    tagged = {
        "logsource_product": "aws",
        "logsource_service": "cloudtrail",
        "eventName": "ConsoleLogin",
    }
    assert rules.evaluate(tagged)
    assert not rules.evaluate({"eventName": "ConsoleLogin"})


def test_rules_without_literals_still_run_and_a_match_carries_the_rule():
    rules = engine("sel:\n  Size|gt: 5\ncondition: sel")
    assert rules.rules[0].literals is None
    (match,) = rules.evaluate({"logsource_product": "test", "Size": 9})
    assert match.rule_id == "5f0b4d0e-0000-4000-8000-000000000001"
    assert match.level == "high"
    assert "attack.t1059" in match.tags
    assert match.matched == {"Size": 9}


def test_a_rule_that_raises_is_counted_and_the_stream_goes_on():
    rules = engine("sel:\n  When|hour: 3\ncondition: sel")
    broken = rules._loaded[0]
    object.__setattr__(broken, "match", lambda *_: 1 / 0)
    assert rules.evaluate({"logsource_product": "test", "When": "x"}) == []
    assert rules.evaluate({"logsource_product": "test", "When": "y"}) == []
    assert rules.errors[broken.rule.id].count == 2
    assert "ZeroDivisionError" in rules.errors[broken.rule.id].last


def test_timestamp_parts():
    rules = engine("sel:\n  When|hour: 3\ncondition: sel")
    assert fires(rules, When="2026-11-22T03:15:00Z")
    assert not fires(rules, When="2026-11-22T04:15:00Z")


def test_broken_rules_are_reported_with_file_line_and_reason_and_the_rest_load(tmp_path):
    good = "title: good\nlogsource: {product: test}\ndetection:\n  sel: {A: x}\n  condition: sel\n"
    (tmp_path / "good.yml").write_text(good)
    (tmp_path / "bad_yaml.yml").write_text("title: bad\ndetection:\n  sel: [unclosed\n")
    (tmp_path / "bad_regex.yml").write_text(good.replace("{A: x}", "{A|re: '(?<n>x)\\k<n>'}"))
    (tmp_path / "bad_modifier.yml").write_text(good.replace("{A: x}", "{A|sideways: x}"))
    loaded = load_rules([tmp_path])
    assert [rule.title for rule in loaded.rules] == ["good"]
    problems = {Path(p.path).name: p for p in loaded.problems}
    assert set(problems) == {"bad_yaml.yml", "bad_regex.yml", "bad_modifier.yml"}
    assert problems["bad_yaml.yml"].line == 4
    assert "YAML" in problems["bad_yaml.yml"].reason
    assert "sideways" in problems["bad_modifier.yml"].reason
    assert "invalid" in problems["bad_regex.yml"].reason.lower()


def test_the_cache_rebuilds_the_same_rules_without_parsing(tmp_path):
    rule = (
        "title: cached\nlogsource: {product: test}\n"
        "detection:\n  sel: {A|contains: abc}\n  condition: sel\n"
    )
    (tmp_path / "r.yml").write_text(rule)
    cache = RuleCache(tmp_path / "cache.sqlite")
    first = load_rules([tmp_path / "r.yml"], cache=cache)
    second = load_rules([tmp_path / "r.yml"], cache=cache)
    assert (first.cached, second.cached) == (0, 1)
    assert first.rules == second.rules
    assert RuleSet(second.rules).evaluate({"logsource_product": "test", "A": "xabcx"})


def test_literal_prefilter_keeps_results_identical():
    detection = (
        "sel:\n  CommandLine|contains: 'vssadmin delete'\n"
        "filter:\n  User: SYSTEM\ncondition: sel and not filter"
    )
    rules = engine(detection)
    assert rules.rules[0].literals == (("CommandLine", "vssadmin delete"),)
    assert fires(rules, CommandLine="VSSADMIN Delete shadows", User="bob")
    assert not fires(rules, CommandLine="vssadmin list", User="bob")
    assert not fires(rules, CommandLine="vssadmin delete", User="system")
