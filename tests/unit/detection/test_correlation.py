"""Sigma correlation rules over streams of base-rule matches: counts, distinct values, sequences."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.rule import SigmaRule
from tests.conftest import shared_data

from puffin.detection.engine.correlation import (
    CompiledCorrelation,
    CorrelationMatch,
    CorrelationState,
    compile_correlation,
)

T0 = 1_700_000_000.0
MINUTE = 60.0

BASE_RULES = """
title: SSH authentication failed
id: 0f0c7d8e-1b2a-4c3d-8e9f-000000000001
name: ssh_failed
status: test
level: low
logsource: {product: linux, service: sshd}
detection:
  selection: {program: sshd, outcome: failure}
  condition: selection
---
title: SSH authentication succeeded
id: 0f0c7d8e-1b2a-4c3d-8e9f-000000000002
name: ssh_success
status: test
level: informational
logsource: {product: linux, service: sshd}
detection:
  selection: {program: sshd, outcome: success}
  condition: selection
---
title: Web login failed
id: 0f0c7d8e-1b2a-4c3d-8e9f-000000000003
name: web_failed
status: test
level: low
logsource: {category: webserver}
detection:
  selection: {url: /login, status: 401}
  condition: selection
---
title: Agent heartbeat
id: 0f0c7d8e-1b2a-4c3d-8e9f-000000000004
name: heartbeat
status: test
level: informational
logsource: {product: puffin}
detection:
  selection: {program: puffin-agent, message: heartbeat}
  condition: selection
"""


def correlation_yaml(name: str, body: str, *, level: str = "high", extra: str = "") -> str:
    """Return one correlation rule document with our own id, name and title."""
    number = sum(ord(char) for char in name)
    return (
        f"title: Correlation {name}\n"
        f"id: 7c1e0000-0000-4000-8000-{number:012d}\n"
        f"name: {name}\nstatus: test\nlevel: {level}\n"
        "tags: [attack.credential-access, attack.t1110]\n"
        f"{extra}correlation:\n{body}"
    )


BRUTE_FORCE = correlation_yaml(
    "ssh_brute_force",
    """  type: event_count
  rules: [ssh_failed]
  group-by: [src_ip]
  timespan: 5m
  condition: {gte: 5}
""",
)


def collection(*documents: str) -> SigmaCollection:
    """Parse our base rules and these correlation documents, resolving references."""
    return SigmaCollection.from_yaml("\n---\n".join([BASE_RULES, *documents]))


def compiled(*documents: str) -> list[CompiledCorrelation]:
    """Return every correlation in these documents, compiled."""
    rules = collection(*documents)
    return [compile_correlation(rule) for rule in rules if isinstance(rule, SigmaCorrelationRule)]


def state_for(*documents: str, max_groups: int = 100_000) -> CorrelationState:
    return CorrelationState(compiled(*documents), max_groups=max_groups)


_BASE_IDS = {
    rule.name: str(rule.id) for rule in collection() if isinstance(rule, SigmaRule) and rule.name
}


def matched(*names: str) -> set[str]:
    """Return the ids and names of these base rules, as the engine reports them."""
    return {item for name in names for item in (name, _BASE_IDS[name])}


def feed(
    state: CorrelationState, stream: Iterable[tuple[float, str, Mapping[str, Any]]]
) -> list[CorrelationMatch]:
    """Observe (seconds after T0, base rule name, event) triples; return every match."""
    found: list[CorrelationMatch] = []
    for offset, rule, event in stream:
        found += state.observe(matched(rule), event, T0 + offset)
    return found


def failure(src_ip: str, user: str = "root", **extra: Any) -> dict[str, Any]:
    return {"program": "sshd", "outcome": "failure", "src_ip": src_ip, "user": user, **extra}


def success(src_ip: str, user: str = "root") -> dict[str, Any]:
    return {"program": "sshd", "outcome": "success", "src_ip": src_ip, "user": user}


# --- event_count ---------------------------------------------------------------------------


def test_five_failures_within_five_minutes_give_one_match_with_its_events() -> None:
    state = state_for(BRUTE_FORCE)
    stream = [(i * 30.0, "ssh_failed", failure("203.0.113.7", user=f"u{i}")) for i in range(5)]

    found = feed(state, stream[:4])
    assert found == []
    found = feed(state, stream[4:])

    assert len(found) == 1
    match = found[0]
    assert match.title == "Correlation ssh_brute_force"
    assert match.level == "high"
    assert match.tags == ("attack.credential-access", "attack.t1110")
    assert match.group == {"src_ip": "203.0.113.7"}
    assert match.count == 5
    assert (match.first_seen, match.last_seen) == (T0, T0 + 120.0)
    assert [event["user"] for event in match.events] == ["u0", "u1", "u2", "u3", "u4"]


def test_four_failures_never_reach_a_gte_5_threshold_even_when_flushed() -> None:
    state = state_for(BRUTE_FORCE)
    found = feed(state, [(i * 10.0, "ssh_failed", failure("203.0.113.7")) for i in range(4)])
    found += state.flush(T0 + 3600)
    assert found == []
    assert state.groups == 0


def test_a_burst_fires_once_per_threshold_then_starts_afresh() -> None:
    state = state_for(BRUTE_FORCE)
    found = feed(state, [(i * 1.0, "ssh_failed", failure("203.0.113.7")) for i in range(27)])
    assert len(found) == 5
    assert [match.count for match in found] == [5] * 5
    assert [match.last_seen - T0 for match in found] == [4.0, 9.0, 14.0, 19.0, 24.0]


def test_failures_older_than_the_timespan_slide_out_of_the_window() -> None:
    state = state_for(BRUTE_FORCE)
    stream = [
        (offset, "ssh_failed", failure("203.0.113.7")) for offset in (0.0, 100.0, 200.0, 250.0)
    ]
    stream += [(320.0, "ssh_failed", failure("203.0.113.7"))]  # the first one is now too old
    assert feed(state, stream) == []

    found = feed(state, [(330.0, "ssh_failed", failure("203.0.113.7"))])
    assert len(found) == 1
    assert found[0].count == 5
    assert (found[0].first_seen, found[0].last_seen) == (T0 + 100.0, T0 + 330.0)


def test_a_long_pause_forgets_the_group_entirely() -> None:
    state = state_for(BRUTE_FORCE)
    early = [(i * 10.0, "ssh_failed", failure("203.0.113.7")) for i in range(4)]
    later = [(400.0 + i * 10.0, "ssh_failed", failure("203.0.113.7")) for i in range(4)]
    assert feed(state, early + later) == []
    assert state.groups == 1

    found = feed(state, [(440.0, "ssh_failed", failure("203.0.113.7"))])
    assert len(found) == 1
    assert found[0].first_seen == T0 + 400.0


def test_groups_are_counted_separately_and_events_without_the_field_do_not_count() -> None:
    state = state_for(BRUTE_FORCE)
    interleaved = [
        (i * 10.0, "ssh_failed", failure("198.51.100.1" if i % 2 else "198.51.100.2"))
        for i in range(8)
    ]
    no_source = {"program": "sshd", "outcome": "failure", "user": "root"}
    stream = [*interleaved, *((90.0 + i, "ssh_failed", no_source) for i in range(5))]
    assert feed(state, stream) == []

    found = feed(state, [(100.0, "ssh_failed", failure("198.51.100.1"))])
    assert [match.group for match in found] == [{"src_ip": "198.51.100.1"}]


def test_an_event_of_an_unreferenced_rule_does_not_count() -> None:
    state = state_for(BRUTE_FORCE)
    stream = [(i * 1.0, "ssh_success", success("203.0.113.7")) for i in range(10)]
    assert feed(state, stream) == []


def test_aliases_group_rules_whose_events_name_the_source_differently() -> None:
    alias = correlation_yaml(
        "password_guessing_any_service",
        """  type: event_count
  rules: [ssh_failed, 0f0c7d8e-1b2a-4c3d-8e9f-000000000003]
  group-by: [source]
  timespan: 10m
  aliases:
    source:
      ssh_failed: src_ip
      web_failed: client_address
  condition: {gte: 3}
""",
    )
    state = state_for(alias)
    web = {"url": "/login", "status": 401}
    stream = [
        (0.0, "ssh_failed", failure("192.0.2.9")),
        (5.0, "web_failed", {**web, "src_ip": "192.0.2.9"}),  # the web rule's field is another
        (10.0, "web_failed", {**web, "client_address": "192.0.2.50"}),
        (20.0, "ssh_failed", failure("192.0.2.9")),
    ]
    assert feed(state, stream) == []

    found = feed(state, [(30.0, "web_failed", {**web, "client_address": "192.0.2.9"})])
    assert [match.group for match in found] == [{"source": "192.0.2.9"}]
    assert found[0].count == 3


# --- value_count ---------------------------------------------------------------------------

SPRAY = correlation_yaml(
    "password_spray",
    """  type: value_count
  rules: ssh_failed
  group-by: [src_ip]
  timespan: 10m
  condition: {gte: 3, field: user}
""",
)


def test_value_count_counts_distinct_users_not_attempts() -> None:
    state = state_for(SPRAY)
    same_user = [(i * 5.0, "ssh_failed", failure("203.0.113.7", user="root")) for i in range(6)]
    no_user = [(31.0, "ssh_failed", {"program": "sshd", "src_ip": "203.0.113.7"})]
    other_source = [(32.0, "ssh_failed", failure("198.51.100.4", user="admin"))]
    assert (
        feed(
            state,
            same_user
            + no_user
            + other_source
            + [
                (40.0, "ssh_failed", failure("203.0.113.7", user="admin")),
            ],
        )
        == []
    )

    found = feed(state, [(50.0, "ssh_failed", failure("203.0.113.7", user="oracle"))])
    assert len(found) == 1
    assert found[0].group == {"src_ip": "203.0.113.7"}
    assert found[0].count == 3


def test_value_count_forgets_values_seen_before_the_window() -> None:
    state = state_for(SPRAY)
    stream = [
        (0.0, "ssh_failed", failure("203.0.113.7", user="root")),
        (400.0, "ssh_failed", failure("203.0.113.7", user="admin")),
        (650.0, "ssh_failed", failure("203.0.113.7", user="oracle")),  # root is 650 s old
    ]
    assert feed(state, stream) == []
    found = feed(state, [(660.0, "ssh_failed", failure("203.0.113.7", user="root"))])
    assert [match.count for match in found] == [3]


# --- temporal and temporal_ordered ----------------------------------------------------------

FAIL_AND_SUCCESS = correlation_yaml(
    "failure_and_success",
    """  type: temporal
  rules: [ssh_failed, ssh_success]
  group-by: [src_ip]
  timespan: 5m
""",
)
FAIL_THEN_SUCCESS = correlation_yaml(
    "failure_then_success",
    """  type: temporal_ordered
  rules: [ssh_failed, ssh_success]
  group-by: [src_ip]
  timespan: 5m
""",
)


def names(found: list[CorrelationMatch]) -> list[str]:
    return [match.title.removeprefix("Correlation ") for match in found]


def test_temporal_fires_in_any_order_but_temporal_ordered_only_in_order() -> None:
    state = state_for(FAIL_AND_SUCCESS, FAIL_THEN_SUCCESS)
    reversed_order = [
        (0.0, "ssh_success", success("192.0.2.1")),
        (10.0, "ssh_failed", failure("192.0.2.1")),
    ]
    assert names(feed(state, reversed_order)) == ["failure_and_success"]

    in_order = [
        (100.0, "ssh_failed", failure("192.0.2.2")),
        (101.0, "ssh_failed", failure("192.0.2.2")),
        (110.0, "ssh_success", success("192.0.2.2")),
    ]
    found = feed(state, in_order)
    assert sorted(names(found)) == ["failure_and_success", "failure_then_success"]
    ordered = next(match for match in found if match.title.endswith("then_success"))
    assert ordered.group == {"src_ip": "192.0.2.2"}
    assert [event["outcome"] for event in ordered.events] == ["failure", "failure", "success"]
    assert (ordered.first_seen, ordered.last_seen) == (T0 + 100.0, T0 + 110.0)


def test_temporal_needs_every_rule_within_the_timespan_of_one_group() -> None:
    state = state_for(FAIL_AND_SUCCESS, FAIL_THEN_SUCCESS)
    stream = [
        (0.0, "ssh_failed", failure("192.0.2.1")),
        (400.0, "ssh_success", success("192.0.2.1")),  # too late for the failure
        (410.0, "ssh_failed", failure("192.0.2.3")),
        (420.0, "ssh_success", success("192.0.2.4")),  # another source
    ]
    assert feed(state, stream) == []


def test_one_event_matching_both_rules_is_not_a_sequence() -> None:
    state = state_for(FAIL_THEN_SUCCESS)
    event = failure("192.0.2.1")
    assert state.observe(matched("ssh_failed", "ssh_success"), event, T0) == []
    assert len(state.observe(matched("ssh_success"), success("192.0.2.1"), T0 + 1)) == 1


# --- closing conditions ---------------------------------------------------------------------

SILENT_AGENT = correlation_yaml(
    "agent_nearly_silent",
    """  type: event_count
  rules: heartbeat
  group-by: [host]
  timespan: 10m
  condition: {lt: 3}
""",
    level="medium",
)


def beat(host: str) -> dict[str, Any]:
    return {"program": "puffin-agent", "message": "heartbeat", "host": host}


def test_lt_is_decided_when_the_window_closes_by_flush() -> None:
    state = state_for(SILENT_AGENT)
    stream = [
        (0.0, "heartbeat", beat("quiet")),
        (10.0, "heartbeat", beat("busy")),
        (20.0, "heartbeat", beat("busy")),
        (30.0, "heartbeat", beat("busy")),
        (100.0, "heartbeat", beat("quiet")),
    ]
    assert feed(state, stream) == []
    assert state.flush(T0 + 599.0) == []

    found = state.flush(T0 + 601.0)
    assert [(match.group, match.count) for match in found] == [({"host": "quiet"}, 2)]
    assert found[0].events == (beat("quiet"), beat("quiet"))
    assert state.flush(T0 + 700.0) == []  # the busy host's window closed without a match


def test_lt_is_decided_lazily_by_a_later_event() -> None:
    state = state_for(SILENT_AGENT)
    assert feed(state, [(0.0, "heartbeat", beat("quiet"))]) == []
    found = feed(state, [(900.0, "heartbeat", beat("other"))])
    assert [match.group for match in found] == [{"host": "quiet"}]


def test_eq_counts_exactly_at_window_close() -> None:
    exactly_two = correlation_yaml(
        "two_heartbeats",
        """  type: event_count
  rules: heartbeat
  group-by: [host]
  timespan: 1m
  condition: {eq: 2}
""",
    )
    state = state_for(exactly_two)
    stream = [(0.0, "heartbeat", beat("a")), (1.0, "heartbeat", beat("b"))]
    stream += [(2.0, "heartbeat", beat("b")), (3.0, "heartbeat", beat("a"))]
    stream += [(4.0, "heartbeat", beat("a"))]
    feed(state, stream)
    assert [match.group for match in state.flush(T0 + 120.0)] == [{"host": "b"}]


# --- robustness -----------------------------------------------------------------------------


def test_state_holds_at_most_max_groups_and_counts_evictions() -> None:
    state = state_for(BRUTE_FORCE, max_groups=3)
    first = [(i * 1.0, "ssh_failed", failure("10.0.0.1")) for i in range(4)]
    others = [(10.0 + i, "ssh_failed", failure(f"10.0.0.{i}")) for i in range(2, 5)]
    assert feed(state, first + others) == []
    assert state.groups == 3
    assert state.evicted == 1

    # 10.0.0.1 was the least recently used: its four failures are forgotten.
    assert feed(state, [(20.0, "ssh_failed", failure("10.0.0.1"))]) == []
    assert state.groups == 3
    assert state.evicted == 2


def test_every_surviving_window_still_closes_after_heavy_group_churn() -> None:
    # Around a thousand evictions the state tidies its bookkeeping of window deadlines;
    # whichever host's window is open at that moment must still be decided on flush.
    for hosts in range(1020, 1045):
        state = state_for(SILENT_AGENT, max_groups=3)
        feed(state, [(i / 1000, "heartbeat", beat(f"host-{i}")) for i in range(hosts)])
        found = state.flush(T0 + 3600.0)
        survivors = [{"host": f"host-{i}"} for i in range(hosts - 3, hosts)]
        assert [match.group for match in found] == survivors, hosts
        assert state.evicted == hosts - 3


def test_slightly_out_of_order_events_count_and_very_late_ones_are_ignored() -> None:
    state = state_for(BRUTE_FORCE)
    shuffled = [30.0, 10.0, 40.0, 0.0]
    stream = [
        (offset, "ssh_failed", failure("203.0.113.7", user=f"t{offset:.0f}")) for offset in shuffled
    ]
    assert feed(state, stream) == []
    found = feed(state, [(20.0, "ssh_failed", failure("203.0.113.7", user="t20"))])
    assert len(found) == 1
    assert [event["user"] for event in found[0].events] == ["t0", "t10", "t20", "t30", "t40"]
    assert found[0].first_seen == T0

    feed(state, [(2000.0, "ssh_failed", failure("198.51.100.1"))])
    late = [(100.0 + i, "ssh_failed", failure("198.51.100.1")) for i in range(6)]
    assert feed(state, late) == []
    assert state.late == 6


def test_a_correlation_over_a_correlation_receives_its_matches() -> None:
    brute_then_success = correlation_yaml(
        "brute_force_then_success",
        """  type: temporal_ordered
  rules: [ssh_brute_force, ssh_success]
  group-by: [src_ip]
  timespan: 15m
""",
        level="critical",
    )
    state = state_for(BRUTE_FORCE, brute_then_success)
    failures = [(i * 1.0, "ssh_failed", failure("203.0.113.7")) for i in range(5)]
    assert feed(state, failures) == []  # the inner match is silenced: generate is false

    found = feed(state, [(60.0, "ssh_success", success("203.0.113.7"))])
    assert [(match.level, match.group) for match in found] == [
        ("critical", {"src_ip": "203.0.113.7"})
    ]
    # Neither generates: the rules they refer to should not alert on their own either.
    assert {"ssh_brute_force", "ssh_failed", "ssh_success"} <= state.silenced


def test_inner_matches_are_returned_when_the_outer_correlation_generates() -> None:
    outer = correlation_yaml(
        "brute_force_then_success",
        """  type: temporal
  rules: [ssh_brute_force, ssh_success]
  group-by: [src_ip]
  timespan: 15m
  generate: true
""",
    )
    state = state_for(BRUTE_FORCE, outer)
    found = feed(state, [(i * 1.0, "ssh_failed", failure("203.0.113.7")) for i in range(5)])
    assert names(found) == ["ssh_brute_force"]


def test_references_hold_the_ids_and_names_of_every_referenced_rule() -> None:
    state = state_for(BRUTE_FORCE, FAIL_AND_SUCCESS)
    assert state.references >= matched("ssh_failed", "ssh_success")
    assert not state.references & matched("heartbeat", "web_failed")


# --- compile errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            "  type: value_sum\n  rules: ssh_failed\n  timespan: 1h\n"
            "  condition: {gte: 100, field: bytes}\n",
            "type value_sum is not supported",
        ),
        (
            "  type: temporal\n  timespan: 1h\n  condition: ssh_failed and ssh_success\n",
            "extended (boolean) conditions",
        ),
        (
            "  type: temporal_ordered\n  rules: [ssh_failed, ssh_success]\n  timespan: 1h\n"
            "  condition: {gte: 1}\n",
            "temporal_ordered needs every rule",
        ),
        (
            "  type: event_count\n  rules: ssh_failed\n  timespan: 1h\n  condition: {gte: 50000}\n",
            "thresholds from 10000",
        ),
        (
            "  type: event_count\n  rules: ssh_failed\n  group-by: [source]\n  timespan: 1h\n"
            "  aliases: {source: {heartbeat: host}}\n  condition: {gte: 5}\n",
            "alias source maps rule heartbeat, which is not listed",
        ),
    ],
)
def test_unsupported_correlations_are_refused_with_a_reason(body: str, reason: str) -> None:
    rule = next(
        rule
        for rule in collection(correlation_yaml("unsupported", body))
        if isinstance(rule, SigmaCorrelationRule)
    )
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_correlation(rule)


# --- SigmaHQ ---------------------------------------------------------------------------------


def _correlation_files(root: Path) -> list[Path]:
    pattern = re.compile(r"^correlation:", re.MULTILINE)
    return [path for path in sorted(root.rglob("*.yml")) if pattern.search(path.read_text("utf-8"))]


def compile_files(files: Sequence[str | Path]) -> tuple[int, dict[str, str]]:
    """Compile every correlation in these files; return how many compiled and why others not."""
    # Base rules may live in files not loaded here: compile without resolving references.
    rules = SigmaCollection.load_ruleset(list(files), collect_errors=True, resolve_references=False)
    compiled_count, refused = 0, {}
    for rule in rules:
        if isinstance(rule, SigmaCorrelationRule):
            try:
                compile_correlation(rule)
                compiled_count += 1
            except ValueError as error:
                refused[rule.title] = str(error)
    return compiled_count, refused


def test_correlation_files_compile_unresolved_or_say_why(tmp_path: Path) -> None:
    (tmp_path / "brute.yml").write_text(BRUTE_FORCE, "utf-8")
    (tmp_path / "base.yml").write_text(BASE_RULES, "utf-8")
    spray = correlation_yaml(
        "bytes_out",
        "  type: value_sum\n  rules: ssh_failed\n  timespan: 1h\n"
        "  condition: {gte: 100, field: bytes}\n",
    )
    (tmp_path / "exfil.yml").write_text(spray, "utf-8")
    files = _correlation_files(tmp_path)
    assert [path.name for path in files] == ["brute.yml", "exfil.yml"]

    assert compile_files(files) == (
        1,
        {
            "Correlation bytes_out": "correlation 'Correlation bytes_out' ("
            + str((tmp_path / "exfil.yml").resolve())
            + "): type value_sum is not supported "
            "(only event_count, temporal, temporal_ordered, value_count)"
        },
    )


def test_every_sigmahq_correlation_compiles_or_says_why() -> None:
    root = shared_data() / "sigma"
    if not root.is_dir():
        pytest.skip(f"{root} is absent; CI provides ../shared/data")
    files = _correlation_files(root)
    if not files:
        pytest.skip(f"this SigmaHQ snapshot ({root}) holds no correlation rules")
    compiled_count, refused = compile_files(files)
    assert compiled_count + len(refused) >= len(files)
    for title, reason in refused.items():
        assert reason.startswith(f"correlation {title!r}"), reason
