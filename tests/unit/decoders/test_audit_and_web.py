"""Audit records and web access logs decode with or without a syslog header."""

from __future__ import annotations

import pytest

from puffin.ingest.decoders import Decoders

EXECVE_EVENT = (
    "type=SYSCALL msg=audit(1700000000.123:456): arch=c000003e syscall=59 success=yes exit=0"
    " a0=55d0aa a1=55d0bb a2=55d0cc a3=0 items=2 ppid=100 pid=200 auid=1000 uid=0 gid=0"
    ' euid=0 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" key="net-tools"'
    ' type=EXECVE msg=audit(1700000000.123:456): argc=3 a0="curl" a1="-o"'
    " a2=2F746D702F782073682E7368"
    ' type=CWD msg=audit(1700000000.123:456): cwd="/root"'
    " type=PROCTITLE msg=audit(1700000000.123:456): proctitle=6375726C002D6F"
)


@pytest.fixture(scope="module")
def decoders() -> Decoders:
    return Decoders()


def test_an_execve_event_gives_the_command_line_and_the_process(decoders: Decoders) -> None:
    event = decoders.decode(EXECVE_EVENT)
    assert event["decoder"] == "auditd"
    assert (event["audit_type"], event["audit_id"]) == ("SYSCALL", "456")
    assert event["timestamp"] == "2023-11-14T22:13:20.123000+00:00"
    assert event["command"] == "curl -o /tmp/x sh.sh"
    assert (event["a0"], event["a1"], event["a2"]) == ("curl", "-o", "/tmp/x sh.sh")
    assert "a3" not in event  # a SYSCALL register, not an argument
    assert event["proctitle"] == "curl -o"
    assert (event["exe"], event["comm"], event["key"]) == ("/usr/bin/curl", "curl", "net-tools")
    assert (event["uid"], event["auid"], event["success"]) == ("0", "1000", "yes")
    assert (event["status"], event["cwd"], event["pid"]) == ("success", "/root", 200)


def test_a_user_space_record_flattens_its_inner_message(decoders: Decoders) -> None:
    line = (
        "type=USER_LOGIN msg=audit(1700000100.000:900): pid=321 uid=0 auid=4294967295"
        ' ses=4294967295 msg=\'op=login acct="root" exe="/usr/sbin/sshd" hostname=?'
        " addr=203.0.113.7 terminal=sshd res=failed'"
    )
    event = decoders.decode(line)
    assert event["decoder"] == "auditd"
    assert (event["op"], event["acct"], event["user"]) == ("login", "root", "root")
    assert (event["src_ip"], event["terminal"], event["res"]) == ("203.0.113.7", "sshd", "failed")
    assert event["status"] == "failure"
    assert event["audit_hostname"] == "?"  # never taken for the reporting host


def test_enriched_fields_and_hex_commands_are_readable(decoders: Decoders) -> None:
    line = (
        "type=USER_CMD msg=audit(1700000200.500:901): pid=1 uid=1000 auid=1000 ses=2"
        ' msg=\'cwd="/home/alice" cmd=6C73202D6C61 exe="/usr/bin/sudo" terminal=pts/0'
        ' res=success\'\x1dUID="alice" AUID="alice"'
    )
    event = decoders.decode(line)
    assert (event["cmd"], event["UID"], event["AUID"]) == ("ls -la", "alice", "alice")
    assert (event["uid"], event["status"]) == ("1000", "success")


def test_audit_records_behind_a_syslog_header_keep_the_header(decoders: Decoders) -> None:
    line = (
        "Nov 14 22:13:21 web1 audispd: node=web1 type=EXECVE msg=audit(1700000001.000:457):"
        ' argc=2 a0="cat" a1="/etc/shadow"'
    )
    event = decoders.decode(line, year=2023)
    assert event["decoder"] == "auditd"
    assert (event["timestamp"], event["hostname"]) == ("2023-11-14T22:13:21", "web1")
    assert (event["node"], event["command"]) == ("web1", "cat /etc/shadow")


def test_text_that_only_starts_like_an_audit_record_is_not_one(decoders: Decoders) -> None:
    assert decoders.decode("type=nothing here")["decoder"] == ""


def test_a_combined_log_line_gives_client_request_and_response(decoders: Decoders) -> None:
    line = (
        '198.51.100.23 - jane [10/Oct/2023:13:55:36 +0200] "GET /admin/login.php?next=%2F'
        ' HTTP/1.1" 302 512 "https://example.org/" "curl/8.4.0"'
    )
    event = decoders.decode(line)
    assert event == {
        "full_log": line,
        "decoder": "web-accesslog",
        "src_ip": "198.51.100.23",
        "user": "jane",
        "http_method": "GET",
        "url": "/admin/login.php?next=%2F",
        "protocol": "HTTP/1.1",
        "http_status": 302,
        "bytes": 512,
        "referrer": "https://example.org/",
        "user_agent": "curl/8.4.0",
        "timestamp": "2023-10-10T13:55:36+02:00",
    }


def test_the_common_format_has_no_referrer_and_dash_bytes_mean_zero(decoders: Decoders) -> None:
    event = decoders.decode(
        '192.0.2.4 - - [10/Oct/2023:13:55:36 -0700] "POST /upload HTTP/1.0" 500 -'
    )
    assert (event["decoder"], event["http_status"], event["bytes"]) == ("web-accesslog", 500, 0)
    assert "referrer" not in event
    assert "user" not in event


def test_an_nginx_line_through_syslog_keeps_the_header_time(decoders: Decoders) -> None:
    line = (
        "Oct 10 13:55:37 web1 nginx: 2001:db8::2 - - [10/Oct/2023:13:55:37 +0000]"
        ' "GET / HTTP/2.0" 200 612 "-" "Mozilla/5.0"'
    )
    event = decoders.decode(line, year=2023)
    assert event["decoder"] == "web-accesslog"
    assert (event["timestamp"], event["src_ip"]) == ("2023-10-10T13:55:37", "2001:db8::2")
    assert (event["user_agent"], event["program"]) == ("Mozilla/5.0", "nginx")


def test_a_virtual_host_prefix_and_a_forwarded_address(decoders: Decoders) -> None:
    line = (
        'shop.example.org:443 203.0.113.8 10.0.0.1 - [10/Oct/2023:13:55:38 +0000] "GET /cart'
        ' HTTP/1.1" 404 10 "-" "sqlmap/1.7"'
    )
    event = decoders.decode(line)
    assert (event["vhost"], event["src_ip"]) == ("shop.example.org:443", "203.0.113.8")
    assert event["forwarded_ip"] == "10.0.0.1"
    assert (event["user_agent"], event["http_status"]) == ("sqlmap/1.7", 404)


def test_a_request_that_is_not_http_is_kept_whole(decoders: Decoders) -> None:
    line = r'203.0.113.9 - - [10/Oct/2023:13:55:38 +0000] "\x16\x03\x01\x02\x00" 400 226 "-" "-"'
    event = decoders.decode(line)
    assert event["decoder"] == "web-accesslog"
    assert event["request"] == r"\x16\x03\x01\x02\x00"
    assert "http_method" not in event
    assert "user_agent" not in event


def test_a_web_server_error_log_through_syslog_is_only_syslog(decoders: Decoders) -> None:
    line = "Oct 10 13:55:39 web1 nginx: 2023/10/10 13:55:39 [error] 12#12: *1 open() failed"
    assert decoders.decode(line)["decoder"] == "syslog"


def test_an_unknown_program_writing_an_access_log_is_still_recognised(decoders: Decoders) -> None:
    line = (
        'Oct 10 13:55:40 web1 myproxy: 192.0.2.77 - - [10/Oct/2023:13:55:40 +0000] "GET /x'
        ' HTTP/1.1" 200 1 "-" "-"'
    )
    event = decoders.decode(line)
    assert (event["decoder"], event["src_ip"]) == ("web-accesslog", "192.0.2.77")
