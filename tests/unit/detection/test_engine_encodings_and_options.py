"""Encoding modifiers (utf16, utf16be, wide and its other name utf16le), `re|m`, odd event
values, and Puffin's own `puffin:` rule options (dedupe) through the compiler, the loader
and the cache."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest
from tests.unit.detection.test_engine import engine, fires

from puffin.detection.engine.options import Dedupe, dedupe_of, parse_duration
from puffin.detection.engine.ruleset import RuleSet
from puffin.detection.loader import RuleCache, compile_correlations, load_rules


def _b64(text: str, encoding: str) -> str:
    return base64.b64encode(text.encode(encoding)).decode()


def test_utf16_prepends_the_byte_order_mark_before_base64():
    rules = engine("sel:\n  CommandLine|utf16|base64offset|contains: 'ping'\ncondition: sel")
    assert fires(rules, CommandLine="-enc " + _b64("\ufeffping 127.0.0.1", "utf-16le"))
    # The same text without its byte order mark is another byte sequence.
    assert not fires(rules, CommandLine="-enc " + _b64("ping 127.0.0.1", "utf-8"))


def test_utf16be_encodes_big_endian_before_base64():
    rules = engine("sel:\n  CommandLine|utf16be|base64offset|contains: 'whoami'\ncondition: sel")
    for prefix in ("", "a", "ab"):
        blob = _b64(prefix + "whoami /all", "utf-16be")
        assert fires(rules, CommandLine=f"x {blob}"), prefix
    assert not fires(rules, CommandLine=_b64("whoami /all", "utf-16le"))


@pytest.mark.parametrize("modifier", ["utf16le", "wide"])
def test_utf16le_is_the_specifications_other_name_for_wide(modifier):
    # pySigma 2.0 does not know `utf16le`; the engine registers it as `wide`.
    rules = engine(f"sel:\n  CommandLine|{modifier}|base64offset|contains: 'ping'\ncondition: sel")
    for prefix in ("", "a", "ab"):
        blob = _b64(prefix + "ping 127.0.0.1", "utf-16le")
        assert fires(rules, CommandLine=f"-enc {blob}"), prefix
    assert not fires(rules, CommandLine="-enc " + _b64("ping 127.0.0.1", "utf-8"))
    assert not fires(rules, CommandLine="-enc " + _b64("pong 127.0.0.1", "utf-16le"))


def test_a_utf16le_rule_file_loads_and_fires_through_the_loader(tmp_path):
    rule = textwrap.dedent(
        """\
        title: Encoded ping
        id: 5f0b4d0e-0000-4000-8000-0000000000a1
        logsource: {product: test}
        detection:
          sel:
            CommandLine|utf16le|base64: 'ping'
          condition: sel
        """
    )
    (tmp_path / "utf16le.yml").write_text(rule)
    loaded = load_rules([tmp_path])
    assert loaded.problems == []
    [compiled] = loaded.rules
    assert compiled.id.endswith("a1")
    ruleset = RuleSet(loaded.rules)
    event = {"logsource_product": "test", "CommandLine": _b64("ping", "utf-16le")}
    assert [match.rule_id for match in ruleset.evaluate(event)] == [compiled.id]


def test_regular_expression_multiline_flag_anchors_at_each_line():
    plain = engine("sel:\n  Script|re: '^Invoke-Mimikatz$'\ncondition: sel")
    multiline = engine("sel:\n  Script|re|m: '^Invoke-Mimikatz$'\ncondition: sel")
    script = "$x = 1\nInvoke-Mimikatz\nexit"
    assert fires(multiline, Script=script)
    assert not fires(plain, Script=script)
    assert not fires(multiline, Script="$x = 1\nInvoke-Mimikatz -Command x\nexit")


def test_an_integer_too_long_for_text_does_not_break_the_event_for_other_rules():
    rules = engine("sel:\n  Name|contains: 'mimikatz'\ncondition: sel")
    assert not fires(rules, Name=10**5000)
    assert fires(rules, Name="x mimikatz y", Other=10**5000)
    assert rules.errors == {}


def test_a_hexadecimal_number_too_large_for_a_float_still_compares():
    rules = engine("sel:\n  Size|gt: 5\ncondition: sel")
    assert fires(rules, Size="0x" + "f" * 300)
    assert not fires(rules, Size="-0x" + "f" * 300)
    assert rules.errors == {}


# --- Puffin's own options -------------------------------------------------------------


def test_durations_read_seconds_minutes_hours_and_days():
    assert [parse_duration(v, where="w") for v in (90, "90s", "10m", "2h", "1d", "0")] == [
        90,
        90,
        600,
        7200,
        86400,
        0,
    ]
    for bad in ("soon", "-5m", True, "31d", "1w"):
        with pytest.raises(ValueError, match="w must"):
            parse_duration(bad, where="w")


def test_dedupe_option_shapes():
    assert dedupe_of({}) is None
    assert dedupe_of({"puffin": {}}) is None
    assert dedupe_of({"puffin": {"dedupe": False}}) == Dedupe((), 0)
    found = dedupe_of({"puffin": {"dedupe": {"fields": ["agent", "src_ip"], "window": "30m"}}})
    assert found == Dedupe(("agent", "src_ip"), 1800)
    assert dedupe_of({"puffin": {"dedupe": {"fields": "user", "window": 60}}}) == Dedupe(
        ("user",), 60
    )
    problems = {
        "dedupe must be false or a mapping": {"dedupe": "yes"},
        "needs a window": {"dedupe": {"fields": ["a"]}},
        "unknown key 'key'": {"dedupe": {"key": ["a"], "window": "1m"}},
        "unknown option 'throttle'": {"throttle": "1m"},
        "list of field names": {"dedupe": {"fields": [1], "window": "1m"}},
        "must be a mapping": ["dedupe"],
    }
    for message, block in problems.items():
        with pytest.raises(ValueError, match=message):
            dedupe_of({"puffin": block})


RULE_WITH_DEDUPE = """\
title: Scanner
id: 5f0b4d0e-0000-4000-8000-0000000000b1
logsource: {product: test}
puffin:
  dedupe:
    fields: [agent, src_ip]
    window: 10m
detection:
  sel: {user_agent|contains: sqlmap}
  condition: sel
"""


def test_a_rules_dedupe_is_compiled_cached_and_a_bad_one_is_a_reported_problem(tmp_path):
    (tmp_path / "good.yml").write_text(RULE_WITH_DEDUPE)
    (tmp_path / "bad.yml").write_text(
        RULE_WITH_DEDUPE.replace("10m", "ten minutes").replace("0000000000b1", "0000000000b2")
    )
    cache = RuleCache(tmp_path / "cache.sqlite")
    first = load_rules([tmp_path], cache=cache)
    second = load_rules([tmp_path], cache=cache)
    assert second.cached == 2
    for loaded in (first, second):
        [rule] = loaded.rules
        assert rule.dedupe == Dedupe(("agent", "src_ip"), 600)
        [problem] = loaded.problems
        assert Path(problem.path).name == "bad.yml"
        assert "puffin.dedupe.window" in problem.reason


def test_a_rule_without_the_block_has_no_dedupe_of_its_own(tmp_path):
    text = RULE_WITH_DEDUPE.replace(
        "puffin:\n  dedupe:\n    fields: [agent, src_ip]\n    window: 10m\n", ""
    )
    (tmp_path / "plain.yml").write_text(text)
    [rule] = load_rules([tmp_path]).rules
    assert rule.dedupe is None


def test_a_correlation_carries_its_dedupe(tmp_path):
    text = textwrap.dedent(
        """\
        title: Failure
        id: 5f0b4d0e-0000-4000-8000-0000000000c1
        name: failure
        logsource: {product: test}
        detection:
          sel: {status: failure}
          condition: sel
        ---
        title: Many failures
        id: 5f0b4d0e-0000-4000-8000-0000000000c2
        puffin:
          dedupe: {fields: [src_ip], window: 1h}
        correlation:
          type: event_count
          rules: [failure]
          group-by: [src_ip]
          timespan: 5m
          condition: {gte: 3}
        """
    )
    (tmp_path / "c.yml").write_text(text)
    loaded = load_rules([tmp_path])
    [correlation], problems = compile_correlations(loaded.correlations)
    assert problems == []
    assert correlation.dedupe == Dedupe(("src_ip",), 3600)
    broken = text.replace("window: 1h", "window: forever")
    (tmp_path / "c.yml").write_text(broken)
    compiled, problems = compile_correlations(load_rules([tmp_path]).correlations)
    assert compiled == []
    assert "puffin.dedupe.window" in problems[0].reason
