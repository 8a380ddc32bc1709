"""Each program decoder turns hand-written lines into exactly the fields a rule writer expects."""

from __future__ import annotations

from typing import Any

import pytest

from puffin.ingest.decoders import Decoders

HEADER = {
    "full_log",
    "decoder",
    "timestamp",
    "hostname",
    "program",
    "subsystem",
    "pid",
    "message",
    "facility",
    "severity",
    "app_name",
    "procid",
    "msgid",
    "structured_data",
}
PREFIX = "Mar  3 10:15:01 bastion "


@pytest.fixture(scope="module")
def decoders() -> Decoders:
    return Decoders()


def program_fields(event: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in event.items() if name not in HEADER}


CASES: list[tuple[str, str, dict[str, Any]]] = [
    # sshd
    (
        "sshd[4242]: Failed password for invalid user admin from 203.0.113.7 port 52144 ssh2",
        "sshd",
        {
            "user": "admin",
            "src_ip": "203.0.113.7",
            "src_port": 52144,
            "auth_method": "password",
            "action": "login",
            "status": "failure",
            "invalid_user": True,
        },
    ),
    (
        "sshd[4243]: Accepted publickey for deploy from 198.51.100.20 port 40022 ssh2:"
        " ED25519 SHA256:Zm9vYmFyYmF6",
        "sshd",
        {
            "user": "deploy",
            "src_ip": "198.51.100.20",
            "src_port": 40022,
            "auth_method": "publickey",
            "key_type": "ED25519",
            "key_fingerprint": "SHA256:Zm9vYmFyYmF6",
            "action": "login",
            "status": "success",
        },
    ),
    (
        "sshd[4244]: Invalid user oracle from 203.0.113.9 port 33210",
        "sshd",
        {
            "user": "oracle",
            "src_ip": "203.0.113.9",
            "src_port": 33210,
            "action": "invalid_user",
            "status": "failure",
            "invalid_user": True,
        },
    ),
    (
        "sshd[4245]: Disconnected from user deploy 198.51.100.20 port 40022",
        "sshd",
        {"user": "deploy", "src_ip": "198.51.100.20", "src_port": 40022, "action": "logout"},
    ),
    (
        "sshd[4246]: Connection closed by authenticating user root 203.0.113.7 port 52200"
        " [preauth]",
        "sshd",
        {"user": "root", "src_ip": "203.0.113.7", "src_port": 52200, "action": "connection_closed"},
    ),
    (
        "sshd[4247]: error: maximum authentication attempts exceeded for root from 2001:db8::7"
        " port 2222 ssh2 [preauth]",
        "sshd",
        {
            "user": "root",
            "src_ip": "2001:db8::7",
            "src_port": 2222,
            "action": "max_auth_attempts",
            "status": "failure",
        },
    ),
    (
        "sshd[4248]: Failed password for root from bad-host.example.net port 3333 ssh2",
        "sshd",
        {
            "user": "root",
            "src_host": "bad-host.example.net",
            "src_port": 3333,
            "auth_method": "password",
            "action": "login",
            "status": "failure",
        },
    ),
    (
        "sshd[4249]: Received disconnect from 203.0.113.7 port 52144:11: Bye Bye [preauth]",
        "sshd",
        {"src_ip": "203.0.113.7", "src_port": 52144, "action": "disconnected"},
    ),
    (
        "sshd[4250]: Did not receive identification string from 192.0.2.44 port 61000",
        "sshd",
        {"src_ip": "192.0.2.44", "src_port": 61000, "action": "no_identification"},
    ),
    (
        "sshd[1]: Server listening on 0.0.0.0 port 22.",
        "sshd",
        {"dst_ip": "0.0.0.0", "dst_port": 22, "action": "service_started"},
    ),
    (
        "sshd[4251]: debug1: an internal detail nobody parses from 192.0.2.80",
        "sshd",
        {"src_ip": "192.0.2.80"},
    ),
    ("sshd[4252]: Corrupted MAC on input.", "sshd", {}),
    # sudo
    (
        "sudo:    alice : TTY=pts/1 ; PWD=/srv/app ; USER=root ;"
        " COMMAND=/usr/bin/systemctl restart nginx",
        "sudo",
        {
            "src_user": "alice",
            "dst_user": "root",
            "user": "root",
            "tty": "pts/1",
            "pwd": "/srv/app",
            "command": "/usr/bin/systemctl restart nginx",
            "action": "sudo",
            "status": "success",
        },
    ),
    (
        "sudo[881]:      bob : 3 incorrect password attempts ; TTY=pts/2 ; PWD=/home/bob ;"
        " USER=root ; COMMAND=/bin/cat /etc/shadow",
        "sudo",
        {
            "src_user": "bob",
            "dst_user": "root",
            "user": "root",
            "tty": "pts/2",
            "pwd": "/home/bob",
            "command": "/bin/cat /etc/shadow",
            "action": "sudo",
            "status": "failure",
            "reason": "3 incorrect password attempts",
        },
    ),
    (
        "sudo:  carol : command not allowed ; PWD=/tmp ; USER=postgres ; GROUP=dba ;"
        " COMMAND=/usr/bin/psql -c select 1 ; drop table x",
        "sudo",
        {
            "src_user": "carol",
            "dst_user": "postgres",
            "dst_group": "dba",
            "user": "postgres",
            "pwd": "/tmp",
            "command": "/usr/bin/psql -c select 1 ; drop table x",
            "action": "sudo",
            "status": "failure",
            "reason": "command not allowed",
        },
    ),
    # su
    (
        "su[1200]: (to root) alice on pts/3",
        "su",
        {
            "src_user": "alice",
            "dst_user": "root",
            "user": "root",
            "tty": "pts/3",
            "action": "su",
            "status": "success",
        },
    ),
    (
        "su[1201]: FAILED SU (to root) mallory on pts/4",
        "su",
        {
            "src_user": "mallory",
            "dst_user": "root",
            "user": "root",
            "tty": "pts/4",
            "action": "su",
            "status": "failure",
        },
    ),
    (
        "su: + pts/6 alice:postgres",
        "su",
        {
            "src_user": "alice",
            "dst_user": "postgres",
            "user": "postgres",
            "tty": "pts/6",
            "action": "su",
            "status": "success",
        },
    ),
    (
        "su: FAILED su for root by eve",
        "su",
        {
            "src_user": "eve",
            "dst_user": "root",
            "user": "root",
            "action": "su",
            "status": "failure",
        },
    ),
    # pam
    (
        "sshd[77]: pam_unix(sshd:session): session opened for user deploy(uid=1001) by (uid=0)",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "sshd",
            "pam_type": "session",
            "user": "deploy",
            "uid": "1001",
            "src_uid": "0",
            "action": "session_opened",
            "status": "success",
        },
    ),
    (
        "sudo: pam_unix(sudo:auth): authentication failure; logname=alice uid=1000 euid=0"
        " tty=/dev/pts/1 ruser=alice rhost=  user=alice",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "sudo",
            "pam_type": "auth",
            "logname": "alice",
            "uid": "1000",
            "euid": "0",
            "tty": "/dev/pts/1",
            "src_user": "alice",
            "user": "alice",
            "action": "authentication",
            "status": "failure",
        },
    ),
    (
        "sshd(pam_unix)[15794]: 3 more authentication failures; logname= uid=0 euid=0 tty=ssh"
        " ruser= rhost=198.51.100.77  user=root",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "sshd",
            "count": 3,
            "uid": "0",
            "euid": "0",
            "tty": "ssh",
            "src_ip": "198.51.100.77",
            "user": "root",
            "action": "authentication",
            "status": "failure",
        },
    ),
    (
        "passwd[1500]: pam_unix(passwd:chauthtok): password changed for alice",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "passwd",
            "pam_type": "chauthtok",
            "user": "alice",
            "action": "password_changed",
            "status": "success",
        },
    ),
    (
        "login[900]: pam_unix(login:session): session closed for user alice",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "login",
            "pam_type": "session",
            "user": "alice",
            "action": "session_closed",
            "status": "success",
        },
    ),
    # logind bookkeeping inside sshd is not an authentication event
    ("sshd[78]: pam_systemd(sshd:session): Failed to release session: Interrupted", "sshd", {}),
    # account tools
    (
        "useradd[2001]: new user: name=backup2, UID=1002, GID=1002, home=/home/backup2,"
        " shell=/bin/bash, from=/dev/pts/0",
        "useradd",
        {
            "user": "backup2",
            "uid": "1002",
            "gid": "1002",
            "home": "/home/backup2",
            "shell": "/bin/bash",
            "tty": "/dev/pts/0",
            "action": "user_added",
            "status": "success",
        },
    ),
    (
        "useradd[2001]: new group: name=backup2, GID=1002",
        "useradd",
        {"group": "backup2", "gid": "1002", "action": "group_added", "status": "success"},
    ),
    (
        "groupadd[2100]: group added to /etc/group: name=ops, GID=1050",
        "groupadd",
        {"group": "ops", "gid": "1050", "action": "group_added", "status": "success"},
    ),
    (
        "usermod[2200]: add 'backup2' to group 'sudo'",
        "usermod",
        {"user": "backup2", "group": "sudo", "action": "group_member_added", "status": "success"},
    ),
    (
        "usermod[2201]: change user 'backup2' shell from '/bin/bash' to '/bin/sh'",
        "usermod",
        {
            "user": "backup2",
            "attribute": "shell",
            "old_value": "/bin/bash",
            "new_value": "/bin/sh",
            "shell": "/bin/sh",
            "action": "user_modified",
            "status": "success",
        },
    ),
    (
        "usermod[2202]: change user 'backup2' password",
        "usermod",
        {"user": "backup2", "action": "password_changed", "status": "success"},
    ),
    (
        "passwd[2300]: password for 'backup2' changed by 'root'",
        "passwd",
        {
            "user": "backup2",
            "src_user": "root",
            "action": "password_changed",
            "status": "success",
        },
    ),
    (
        "userdel[2400]: delete user 'backup2'",
        "userdel",
        {"user": "backup2", "action": "user_deleted", "status": "success"},
    ),
    (
        "groupdel[2500]: group 'ops' removed",
        "groupdel",
        {"group": "ops", "action": "group_deleted", "status": "success"},
    ),
    (
        "useradd[2600]: failed adding user 'svc', data deleted",
        "useradd",
        {"user": "svc", "action": "user_added", "status": "failure"},
    ),
    # cron
    (
        "CRON[3001]: (root) CMD (   /usr/local/bin/backup.sh --full)",
        "cron",
        {"user": "root", "command": "/usr/local/bin/backup.sh --full", "action": "cron_command"},
    ),
    (
        "crontab[3100]: (alice) REPLACE (bob)",
        "cron",
        {"src_user": "alice", "user": "bob", "action": "crontab_replaced"},
    ),
    ("cron[900]: (CRON) INFO (pidfile fd = 3)", "cron", {"action": "cron_info"}),
    (
        "CRON[3002]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
        "pam",
        {
            "pam_module": "pam_unix",
            "service": "cron",
            "pam_type": "session",
            "user": "root",
            "uid": "0",
            "src_uid": "0",
            "action": "session_opened",
            "status": "success",
        },
    ),
    # systemd
    (
        "systemd[1]: Started nginx.service - A high performance web server.",
        "systemd",
        {
            "unit": "nginx.service",
            "unit_description": "A high performance web server",
            "action": "service_started",
            "status": "success",
        },
    ),
    (
        "systemd[1]: Failed to start Puffin test service.",
        "systemd",
        {
            "unit_description": "Puffin test service",
            "action": "service_failed",
            "status": "failure",
        },
    ),
    (
        "systemd[1]: backup.service: Main process exited, code=exited, status=2/INVALIDARGUMENT",
        "systemd",
        {
            "unit": "backup.service",
            "exit_code": "exited",
            "exit_status": "2/INVALIDARGUMENT",
            "action": "service_exited",
            "status": "failure",
        },
    ),
    (
        "systemd[1]: backup.service: Failed with result 'exit-code'.",
        "systemd",
        {
            "unit": "backup.service",
            "result": "exit-code",
            "action": "service_failed",
            "status": "failure",
        },
    ),
    (
        "systemd-logind[640]: New session 42 of user alice.",
        "systemd",
        {"session_id": "42", "user": "alice", "action": "session_opened"},
    ),
    (
        "systemd[1]: Started Session 42 of User alice.",
        "systemd",
        {
            "unit_description": "Session 42 of User alice",
            "session_id": "42",
            "user": "alice",
            "action": "service_started",
            "status": "success",
        },
    ),
    # kernel
    (
        "kernel: [ 1234.567890] [UFW BLOCK] IN=eth0 OUT="
        " MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.50 DST=192.0.2.10"
        " LEN=60 TOS=0x00 PREC=0x00 TTL=50 ID=4321 DF PROTO=TCP"
        " SPT=51515 DPT=3389 WINDOW=64240 RES=0x00 SYN URGP=0",
        "kernel",
        {
            "log_prefix": "UFW BLOCK",
            "action": "block",
            "in_interface": "eth0",
            "mac": "52:54:00:12:34:56:52:54:00:65:43:21:08:00",
            "src_ip": "203.0.113.50",
            "dst_ip": "192.0.2.10",
            "protocol": "TCP",
            "src_port": 51515,
            "dst_port": 3389,
        },
    ),
    (
        "kernel: ACCEPT-SSH IN=eth1 OUT= SRC=198.51.100.4 DST=192.0.2.1 PROTO=UDP SPT=53 DPT=5353",
        "kernel",
        {
            "log_prefix": "ACCEPT-SSH",
            "action": "allow",
            "in_interface": "eth1",
            "src_ip": "198.51.100.4",
            "dst_ip": "192.0.2.1",
            "protocol": "UDP",
            "src_port": 53,
            "dst_port": 5353,
        },
    ),
    (
        "kernel: usb 2-1: New USB device found, idVendor=abcd, idProduct=1234, bcdDevice= 1.00",
        "kernel",
        {
            "usb_port": "2-1",
            "usb_vendor_id": "abcd",
            "usb_product_id": "1234",
            "action": "usb_connected",
        },
    ),
    (
        "kernel: device eth0 entered promiscuous mode",
        "kernel",
        {"interface": "eth0", "action": "promiscuous_mode_on"},
    ),
    (
        "kernel: Out of memory: Killed process 4321 (java) total-vm:1000kB",
        "kernel",
        {"process_id": "4321", "process_name": "java", "action": "process_killed"},
    ),
    (
        'kernel: audit: type=1400 audit(1700000000.123:77): apparmor="DENIED" operation="open"'
        ' profile="/usr/sbin/cupsd" name="/etc/shadow" pid=999 comm="cupsd" requested_mask="r"',
        "kernel",
        {
            "audit_type": "1400",
            "audit_id": "77",
            "apparmor": "DENIED",
            "operation": "open",
            "profile": "/usr/sbin/cupsd",
            "name": "/etc/shadow",
            "comm": "cupsd",
            "requested_mask": "r",
        },
    ),
    ("kernel: [    0.000000] Linux version 6.1.0-13-amd64", "kernel", {}),
]


@pytest.mark.parametrize(
    ("line", "decoder", "expected"),
    CASES,
    ids=[f"{decoder}-{line.split(':', 1)[1][:40].strip()}" for line, decoder, _ in CASES],
)
def test_program_lines_decode_to_exactly_these_fields(
    decoders: Decoders, line: str, decoder: str, expected: dict[str, Any]
) -> None:
    event = decoders.decode(PREFIX + line, year=2024)
    assert event["decoder"] == decoder
    assert program_fields(event) == expected


def test_the_header_fields_come_with_every_program_decoder(decoders: Decoders) -> None:
    event = decoders.decode(PREFIX + "sshd[4242]: Invalid user x from 192.0.2.1\n", year=2024)
    assert event["timestamp"] == "2024-03-03T10:15:01"
    assert (event["hostname"], event["program"], event["pid"]) == ("bastion", "sshd", 4242)
    assert event["message"] == "Invalid user x from 192.0.2.1"
    assert event["full_log"] == PREFIX + "sshd[4242]: Invalid user x from 192.0.2.1"


def test_the_audit_pid_is_the_audited_process_not_the_logging_one(decoders: Decoders) -> None:
    line = (
        'kernel: audit: type=1400 audit(1700000000.123:77): apparmor="DENIED" pid=999 comm="cupsd"'
    )
    assert decoders.decode(PREFIX + line)["pid"] == 999
