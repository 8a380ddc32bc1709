"""Real log lines from Wazuh's ruleset tests (read from ../shared/data, never copied here):
every line Wazuh gives to one of the programs we decode must reach our decoder of that
program, with its key fields."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import shared_data

from puffin.ingest.decoders import Decoders

SAMPLES = shared_data() / "wazuh-log-samples"

# Wazuh decoder name -> ours. Wazuh has no decoder of its own for the shadow-utils tools
# (useradd & co. are matched by program name in its rules), so none appear here.
WAZUH_TO_OURS = {
    "sshd": "sshd",
    "sudo": "sudo",
    "su": "su",
    "pam": "pam",
    "cron": "cron",
    "crond": "cron",
    "systemd": "systemd",
    "kernel": "kernel",
    "auditd": "auditd",
    "web-accesslog": "web-accesslog",
}

# Lines where Wazuh's expectation is not ours, with the reason. Keyed by (file, line start).
EXCEPTIONS = {
    ("su.ini", "Apr 27 15:22:23 niban su(pam_unix)"): (
        "pam",
        "a PAM module's message written under su's name: the pam decoder reads it (Wazuh's"
        " own pam.ini expects the same line shape as pam)",
    ),
}

_SECTION = re.compile(r"\[(?P<name>.*)\]\s*$")
_LOG = re.compile(r"log \d+ (?:pass|fail) = ?(?P<line>.*)$")
_DECODER = re.compile(r"decoder\s*=\s*(?P<name>.*?)\s*$")
_IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]*:[0-9A-Fa-f:]+)"
_FROM_IP = re.compile(rf"\bfrom ({_IP})(?: port (\d+))?\b")
_FOR_USER = re.compile(r"\b(?:for|[Uu]ser) (?:invalid user |illegal user )?(\S+) from ")


@dataclass(frozen=True)
class Sample:
    file: str
    line: str
    wazuh_decoder: str


def read_samples(folder: Path) -> list[Sample]:
    """Parse the INI files by hand: keys repeat inside a section, which configparser refuses."""
    samples: list[Sample] = []
    for path in sorted(folder.glob("*.ini")):
        pending: list[str] = []
        for text in path.read_text(errors="replace").splitlines():
            if _SECTION.match(text):
                pending = []
            elif (log := _LOG.match(text)) is not None:
                pending.append(log.group("line"))
            elif (decoder := _DECODER.match(text)) is not None:
                samples += [Sample(path.name, line, decoder.group("name")) for line in pending]
                pending = []
    return samples


@pytest.fixture(scope="module")
def ours() -> list[Sample]:
    if not SAMPLES.is_dir():
        pytest.skip(f"{SAMPLES} is absent; CI provides ../shared/data")
    return [sample for sample in read_samples(SAMPLES) if sample.wazuh_decoder in WAZUH_TO_OURS]


def expected_decoder(sample: Sample) -> str:
    for (file, start), (decoder, _reason) in EXCEPTIONS.items():
        if sample.file == file and sample.line.startswith(start):
            return decoder
    return WAZUH_TO_OURS[sample.wazuh_decoder]


def check_sshd(line: str, event: dict[str, Any]) -> None:
    source = _FROM_IP.search(line)
    if source is not None:
        assert event.get("src_ip") == source.group(1)
        if source.group(2):
            assert event.get("src_port") == int(source.group(2))
    user = _FOR_USER.search(line)
    if user is not None:
        assert event.get("user") == user.group(1)


def check_sudo(line: str, event: dict[str, Any]) -> None:
    assert event["command"] == line.split("COMMAND=", 1)[1]
    assert event["dst_user"] == re.search(r"USER=(\S+)", line).group(1)  # type: ignore[union-attr]
    assert event["src_user"] == line.split("sudo:", 1)[1].split(":")[0].strip()
    assert event["status"] == ("success" if " : TTY=" in line else "failure")


def check_su(line: str, event: dict[str, Any]) -> None:
    assert {"src_user", "dst_user", "status"} <= set(event)


def check_pam(line: str, event: dict[str, Any]) -> None:
    assert {"action", "status", "service"} <= set(event)


def check_kernel(line: str, event: dict[str, Any]) -> None:
    if "SRC=" in line:
        assert event["src_ip"] == re.search(r"SRC=(\S+)", line).group(1)  # type: ignore[union-attr]
        assert event["dst_ip"] == re.search(r"DST=(\S+)", line).group(1)  # type: ignore[union-attr]
        assert event["protocol"] == re.search(r"PROTO=(\S+)", line).group(1)  # type: ignore[union-attr]
    elif "audit(" in line:
        assert event["audit_type"] == "1400"
        assert event["apparmor"] in line
    else:
        assert event["action"] in ("usb_connected", "usb_disconnected")


def check_auditd(line: str, event: dict[str, Any]) -> None:
    first = re.search(r"type=(\w+) msg=audit\([\d.]+:(\d+)\)", line)
    assert first is not None
    assert (event["audit_type"], event["audit_id"]) == (first.group(1), first.group(2))
    if "type=EXECVE" in line:
        argv = re.search(r"type=EXECVE msg=\S+ argc=\d+ a0=\"([^\"]*)\"", line)
        assert argv is not None
        assert event["command"].startswith(argv.group(1))
    for name in ("exe", "comm", "key"):
        quoted = re.search(rf'\b{name}="([^"]*)"', line)
        if quoted is not None:
            assert event[name] == quoted.group(1)


def check_web(line: str, event: dict[str, Any]) -> None:
    response = re.search(r'" (\d{3}) (\d+|-)', line)
    assert response is not None
    assert event["http_status"] == int(response.group(1))
    assert event["src_ip"] in line.split("[", 1)[0]
    assert event["http_method"] in ("GET", "POST", "OPTIONS")
    assert event["url"]


def check_systemd(line: str, event: dict[str, Any]) -> None:
    assert event["program"] == "systemd"


CHECKS: dict[str, Callable[[str, dict[str, Any]], None]] = {
    "sshd": check_sshd,
    "sudo": check_sudo,
    "su": check_su,
    "pam": check_pam,
    "kernel": check_kernel,
    "auditd": check_auditd,
    "web-accesslog": check_web,
    "systemd": check_systemd,
}


def test_every_line_of_our_programs_reaches_our_decoder(ours: list[Sample]) -> None:
    decoders = Decoders()
    total: Counter[str] = Counter()
    decoded: Counter[str] = Counter()
    wrong: list[str] = []
    for sample in ours:
        total[sample.file] += 1
        event = decoders.decode(sample.line, year=2024)
        if event["decoder"] == expected_decoder(sample):
            decoded[sample.file] += 1
        else:
            wrong.append(f"{sample.file}: got {event['decoder']!r}: {sample.line[:100]}")
    coverage = {file: f"{decoded[file]}/{count}" for file, count in sorted(total.items())}
    print("coverage per file:", coverage)
    assert not wrong, f"{coverage}\n" + "\n".join(wrong)
    assert sum(total.values()) >= 220  # the data set holds 229 such lines


def test_the_key_fields_of_every_line_are_right(ours: list[Sample]) -> None:
    decoders = Decoders()
    checked: Counter[str] = Counter()
    for sample in ours:
        event = decoders.decode(sample.line, year=2024)
        CHECKS[event["decoder"]](sample.line, event)
        checked[event["decoder"]] += 1
    assert set(checked) == set(CHECKS)


def test_sshd_lines_with_a_source_address_give_it(ours: list[Sample]) -> None:
    decoders = Decoders()
    with_source = [sample for sample in ours if _FROM_IP.search(sample.line)]
    assert len(with_source) >= 40
    for sample in with_source:
        event = decoders.decode(sample.line)
        assert event["src_ip"] == _FROM_IP.search(sample.line).group(1)  # type: ignore[union-attr]


def test_decoded_actions_on_the_samples_are_the_documented_ones(ours: list[Sample]) -> None:
    decoders = Decoders()
    actions = Counter(decoders.decode(sample.line).get("action") for sample in ours)
    assert actions["login"] >= 10
    assert actions["invalid_user"] >= 5
    assert actions["block"] >= 20
    assert actions["sudo"] == 8
