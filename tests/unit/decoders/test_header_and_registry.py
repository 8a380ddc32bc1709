"""The syslog header in its common shapes, and the registry's dispatch and safety net."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import datetime
from typing import Any

import pytest

import puffin.ingest.decoders as package
from puffin.ingest.decoders import Decoders, ProgramDecoder


@pytest.fixture(scope="module")
def decoders() -> Decoders:
    return Decoders()


def test_rfc3164_uses_the_year_given(decoders: Decoders) -> None:
    event = decoders.decode("Feb  9 11:44:56 web2 cron[1]: something\r\n", year=2022)
    assert event["full_log"] == "Feb  9 11:44:56 web2 cron[1]: something"
    assert event["timestamp"] == "2022-02-09T11:44:56"
    assert (event["hostname"], event["program"], event["pid"]) == ("web2", "cron", 1)


def test_rfc3164_without_a_year_takes_the_current_one(decoders: Decoders) -> None:
    event = decoders.decode("Jan  2 00:00:01 h app: x")
    assert event["timestamp"].startswith(f"{datetime.now().year}-01-02T")


def test_a_date_that_does_not_exist_that_year_leaves_the_time_out(decoders: Decoders) -> None:
    event = decoders.decode("Feb 29 10:00:00 h app: x", year=2023)
    assert "timestamp" not in event
    assert (event["decoder"], event["message"]) == ("syslog", "x")


def test_a_priority_gives_facility_and_severity(decoders: Decoders) -> None:
    event = decoders.decode("<38>Feb  9 11:44:56 h app: x", year=2022)
    assert (event["facility"], event["severity"]) == ("auth", "info")


def test_a_year_first_stamp_and_an_iso_stamp(decoders: Decoders) -> None:
    assert decoders.decode("2015 Nov 13 13:40:01 h app: x")["timestamp"] == "2015-11-13T13:40:01"
    event = decoders.decode("2020-03-23 06:47:42.801612-0700  box app[3]: x")
    assert event["timestamp"] == "2020-03-23T06:47:42.801612-07:00"
    assert (event["hostname"], event["program"], event["pid"]) == ("box", "app", 3)


def test_a_line_without_hostname_keeps_the_program(decoders: Decoders) -> None:
    event = decoders.decode("Feb  9 11:44:56 sshd[7]: error: Bad thing", year=2022)
    assert (event["program"], event["pid"], event["decoder"]) == ("sshd", 7, "sshd")
    assert "hostname" not in event


def test_rfc5424_with_structured_data(decoders: Decoders) -> None:
    line = (
        '<165>1 2023-10-11T22:14:15.003Z gw.example.org evntslog 812 ID47 [origin@1 ip="192.0.2.1"'
        ' note="a \\"quoted\\" word"][meta@2 seq="7"] \ufeffservice restarted'
    )
    event = decoders.decode(line)
    assert event["timestamp"] == "2023-10-11T22:14:15.003000+00:00"
    assert (event["facility"], event["severity"]) == ("local4", "notice")
    assert (event["hostname"], event["app_name"], event["procid"]) == (
        "gw.example.org",
        "evntslog",
        "812",
    )
    assert (event["program"], event["pid"], event["msgid"]) == ("evntslog", 812, "ID47")
    assert event["structured_data"] == {
        "origin@1": {"ip": "192.0.2.1", "note": 'a "quoted" word'},
        "meta@2": {"seq": "7"},
    }
    assert event["message"] == "service restarted"


def test_rfc5424_nil_values_are_left_out_and_programs_still_decode(decoders: Decoders) -> None:
    line = "<86>1 - - sshd - - - Invalid user bob from 192.0.2.9"
    event = decoders.decode(line)
    assert event["decoder"] == "sshd"
    assert (event["user"], event["src_ip"]) == ("bob", "192.0.2.9")
    assert not {"timestamp", "hostname", "procid", "msgid", "structured_data"} & set(event)


def test_a_solaris_message_id_is_not_part_of_the_message(decoders: Decoders) -> None:
    line = "Aug 18 07:30:25 sol sshd[1]: [ID 800047 auth.notice] Invalid user z from 192.0.2.3"
    event = decoders.decode(line)
    assert (event["message"], event["user"]) == ("Invalid user z from 192.0.2.3", "z")


def test_unknown_programs_get_the_header_only(decoders: Decoders) -> None:
    event = decoders.decode("Feb  9 11:44:56 h postfix/smtpd[9]: connect from x[192.0.2.1]")
    assert (event["decoder"], event["program"]) == ("syslog", "postfix/smtpd")


def test_a_program_path_is_dispatched_by_its_base_name(decoders: Decoders) -> None:
    event = decoders.decode("Feb  9 11:44:56 h /usr/sbin/cron[9]: (root) CMD (true)")
    assert (event["decoder"], event["command"]) == ("cron", "true")


def test_text_without_any_known_shape_decodes_to_nothing(decoders: Decoders) -> None:
    assert decoders.decode('{"json": true}\n') == {"full_log": '{"json": true}', "decoder": ""}


def test_names_lists_every_program_decoder(decoders: Decoders) -> None:
    expected = {"sshd", "sudo", "su", "pam", "useradd", "usermod", "groupadd", "passwd"}
    expected |= {"userdel", "groupdel", "cron", "systemd", "kernel", "auditd", "web-accesslog"}
    assert set(decoders.names) == expected
    assert len(decoders.names) == len(expected)


def test_every_decoder_module_is_registered(decoders: Decoders) -> None:
    """Completeness: a new module's DECODERS that nobody registered fails here."""
    declared = set()
    for module_info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{module_info.name}")
        declared |= {decoder.name for decoder in getattr(module, "DECODERS", ())}
    assert declared == set(decoders.names)


def test_a_decoder_that_raises_shows_the_error_and_keeps_the_line() -> None:
    def broken(message: str, event: dict[str, Any]) -> bool:
        raise KeyError(message)

    registry = Decoders()
    registry.register(ProgramDecoder("broken", ("sshd",), broken))
    line = "Feb  9 11:44:56 h sshd[1]: Accepted password for a from 192.0.2.1 port 1 ssh2"
    event = registry.decode(line)
    assert event == {"full_log": line, "decoder": "", "decode_error": "KeyError"}
    assert Decoders().decode(line)["decoder"] == "sshd"  # other registries are not affected


def test_decode_accepts_bytes_without_raising(decoders: Decoders) -> None:
    event = decoders.decode(b"Feb  9 11:44:56 h su: alice to root on pts/1\xff")  # type: ignore[arg-type]
    assert event["decoder"] == "su"
    assert event["full_log"].endswith("\ufffd")
