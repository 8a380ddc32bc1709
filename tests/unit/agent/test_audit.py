"""The audit collector joins the records of one audit serial into one event, decodes what
audit hex-encodes, and never loses or repeats a record across restarts and rotation."""

from __future__ import annotations

import json
import os
import pwd
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from puffin.agent.audit import AuditCollector, parse_record
from puffin.agent.outbox import Outbox

GS = "\x1d"  # audit's separator before the enriched (resolved) fields
PROCTITLE = "curl\x00-o\x00/tmp/my file"  # the kernel separates argv with NULs


def _hex(text: str) -> str:
    return text.encode().hex().upper()


def curl_event(serial: int = 4242, stamp: str = "1700000000.123") -> list[str]:
    """The records auditd writes for `curl -o "/tmp/my file"` run by alice under sudo."""
    head = f"msg=audit({stamp}:{serial}):"
    return [
        f"type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 a0=55d5f7c0a0e0 "
        "a1=55d5f7c0b1a0 a2=55d5f7c09f40 a3=0 items=2 ppid=2211 pid=2245 auid=1000 uid=0 "
        'gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts1 ses=3 comm="curl" '
        f'exe="/usr/bin/curl" subj=unconfined key="exec"{GS}ARCH=x86_64 SYSCALL=execve '
        'AUID="alice" UID="root" GID="root" EUID="root"',
        f'type=EXECVE {head} argc=3 a0="curl" a1="-o" a2={_hex("/tmp/my file")}',
        f'type=CWD {head} cwd="/home/alice"',
        f'type=PATH {head} item=0 name="/usr/bin/curl" inode=1311 dev=08:01 mode=0100755 '
        "ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0",
        f'type=PATH {head} item=1 name="/lib64/ld-linux-x86-64.so.2" inode=2203 dev=08:01 '
        "mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0",
        f"type=PROCTITLE {head} proctitle={_hex(PROCTITLE)}",
        f"type=EOE {head}",
    ]


def sshd_login(serial: int = 5000) -> str:
    return (
        f"type=USER_LOGIN msg=audit(1700000100.500:{serial}): pid=3001 uid=0 auid=1000 "
        'ses=7 subj=unconfined msg=\'op=login id=1000 exe="/usr/sbin/sshd" '
        "hostname=203.0.113.7 addr=203.0.113.7 terminal=/dev/pts/2 res=success'"
    )


def _write(path: Path, lines: list[str], mode: str = "a") -> None:
    with path.open(mode) as handle:
        handle.writelines(line + "\n" for line in lines)


def _events(outbox: Outbox) -> list[dict]:
    batch = outbox.next_batch(1000)
    return batch.events if batch else []


def test_the_records_of_one_serial_become_one_event(tmp_path):
    log = tmp_path / "audit.log"
    _write(log, curl_event())
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(log))
    assert collector.collect(outbox, 0.0) == 1
    (event,) = _events(outbox)

    assert event["module"] == "auditd"
    assert event["audit_id"] == "1700000000.123:4242"
    assert event["audit_types"] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"]
    assert event["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert (event["syscall"], event["exe"], event["comm"], event["key"]) == (
        "59",
        "/usr/bin/curl",
        "curl",
        "exec",
    )
    assert (event["SYSCALL"], event["AUID"], event["auid"]) == ("execve", "alice", "1000")
    assert event["command"] == "curl -o /tmp/my file"
    assert (event["a0"], event["a2"]) == ("curl", "/tmp/my file")
    assert event["syscall_a0"] == "55d5f7c0a0e0"
    assert event["cwd"] == "/home/alice"
    assert event["paths"] == ["/usr/bin/curl", "/lib64/ld-linux-x86-64.so.2"]
    assert event["proctitle"] == "curl -o /tmp/my file"
    assert event["full_log"] == "\n".join(curl_event()[:-1])
    collector.close()


def test_an_event_without_eoe_is_written_when_another_serial_arrives_or_after_a_pause(tmp_path):
    log = tmp_path / "audit.log"
    _write(log, [sshd_login(5000), sshd_login(5001)])
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(log), flush_seconds=2.0)
    assert collector.collect(outbox, 10.0) == 1  # 5000 is done: 5001 began
    assert collector.collect(outbox, 11.0) == 0  # 5001 may still get records
    assert collector.collect(outbox, 12.5) == 1  # nothing came for 2 s
    first, second = _events(outbox)
    assert (first["audit_id"], second["audit_id"]) == ("1700000100.500:5000", "1700000100.500:5001")
    # USER_* records nest their fields in msg='…'
    assert (first["exe"], first["addr"], first["res"], first["op"]) == (
        "/usr/sbin/sshd",
        "203.0.113.7",
        "success",
        "login",
    )
    collector.close()


def test_raw_logs_get_the_syscall_name_and_long_arguments_are_reassembled(tmp_path):
    log = tmp_path / "audit.log"
    head = "msg=audit(1700000200.001:77):"
    script = "echo " + "x" * 40
    _write(
        log,
        [
            f"type=SYSCALL {head} arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 "
            'a3=0 items=1 ppid=1 pid=900 auid=0 uid=33 euid=33 comm="sh" exe="/usr/bin/dash" '
            "key=(null)",
            f'type=EXECVE {head} argc=3 a0="sh" a1="-c" a2_len=45 '
            f"a2[0]={_hex(script[:20])} a2[1]={_hex(script[20:])}",
            f"type=EOE {head}",
        ],
    )
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(log))
    collector.collect(outbox, 0.0)
    (event,) = _events(outbox)
    assert event["SYSCALL"] == "execve"
    assert event["euid"] == "33"
    assert event["key"] == "(null)"
    assert event["command"] == f"sh -c {script}"
    collector.close()


def test_a_restart_re_reads_an_unfinished_event_and_repeats_no_finished_one(tmp_path):
    log = tmp_path / "audit.log"
    records = curl_event(serial=1) + curl_event(serial=2)
    _write(log, records[:9])  # serial 1 whole, serial 2 only SYSCALL and EXECVE
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(log))
    assert collector.collect(outbox, 0.0) == 1
    collector.close()  # the agent stops while serial 2 is half read

    _write(log, records[9:])
    restarted = AuditCollector(str(log))
    assert restarted.collect(outbox, 100.0) == 1
    restarted.close()
    first, second = _events(outbox)
    assert first["audit_id"].endswith(":1")
    assert second["audit_id"].endswith(":2")
    assert second["audit_types"] == ["SYSCALL", "EXECVE", "CWD", "PATH", "PROCTITLE"]
    assert second["command"] == "curl -o /tmp/my file"


def test_rotation_by_rename_loses_nothing_even_while_the_agent_is_stopped(tmp_path):
    log = tmp_path / "audit.log"
    outbox = Outbox(tmp_path / "o.db")
    _write(log, curl_event(serial=1))
    collector = AuditCollector(str(log))
    collector.collect(outbox, 0.0)
    _write(log, [sshd_login(2)])  # written just before the rename
    os.rename(log, f"{log}.1")
    _write(log, [sshd_login(3)], mode="w")
    collector.collect(outbox, 1.0)
    collector.collect(outbox, 10.0)
    collector.close()  # stopped; auditd writes and rotates meanwhile

    _write(log, curl_event(serial=4)[:3])
    os.rename(f"{log}.1", f"{log}.2")
    os.rename(log, f"{log}.1")
    _write(log, [sshd_login(5)], mode="w")
    restarted = AuditCollector(str(log))
    restarted.collect(outbox, 20.0)
    restarted.collect(outbox, 30.0)
    restarted.close()
    serials = [int(e["audit_id"].split(":")[1]) for e in _events(outbox)]
    assert serials == [1, 2, 3, 4, 5]


def test_a_missing_or_unreadable_log_is_reported_once(tmp_path):
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(tmp_path / "absent.log"))
    assert collector.collect(outbox, 0.0) == 1
    assert collector.collect(outbox, 1.0) == 0  # waits before retrying
    assert collector.collect(outbox, 61.0) == 0  # still absent: not said again
    (notice,) = _events(outbox)
    assert notice["title"] == "audit log unreadable"
    assert "No such file" in notice["full_log"]

    directory = AuditCollector(str(tmp_path))  # stat works, open fails
    assert directory.collect(outbox, 0.0) == 1


def test_lines_that_are_not_audit_records_are_kept_apart(tmp_path):
    log = tmp_path / "audit.log"
    _write(log, ["garbage without a header", sshd_login(9)])
    outbox = Outbox(tmp_path / "o.db")
    collector = AuditCollector(str(log))
    collector.collect(outbox, 0.0)
    collector.collect(outbox, 5.0)
    collector.close()
    unparsed, login = _events(outbox)
    assert unparsed["title"] == "Unparsed audit line"
    assert login["audit_types"] == ["USER_LOGIN"]
    assert parse_record("type=EOE msg=audit(1.5:2): ").audit_id == "1.5:2"


def as_nobody(work: str, function: Callable[[], Any]) -> Any:
    """Run `function` in a forked child that dropped root for nobody; return its JSON result."""
    nobody = pwd.getpwnam("nobody")
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no exec, so the interpreter under /root need not be reachable
        try:
            os.close(reader)
            os.chdir(work)
            os.setgroups([])
            os.setresgid(nobody.pw_gid, nobody.pw_gid, nobody.pw_gid)
            os.setresuid(nobody.pw_uid, nobody.pw_uid, nobody.pw_uid)
            result = {"result": function()}
        except BaseException as error:
            result = {"error": repr(error)}
        os.write(writer, json.dumps(result, default=str).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    answer = json.loads(data)
    assert "error" not in answer, answer["error"]
    return answer["result"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_an_unprivileged_agent_says_once_that_it_may_not_read_the_log():
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o777)
        log = Path(work) / "audit.log"
        _write(log, curl_event())
        log.chmod(0o600)  # as auditd leaves it: root only

        def collect() -> dict[str, Any]:
            outbox = Outbox(Path(work) / "nobody.db")
            collector = AuditCollector(str(log))
            written = [collector.collect(outbox, now) for now in (0.0, 1.0, 61.0)]
            return {"written": written, "events": outbox.next_batch().events}

        report = as_nobody(work, collect)
    assert report["written"] == [1, 0, 0]
    (notice,) = report["events"]
    assert notice["title"] == "audit log unreadable"
    assert "Permission denied" in notice["full_log"]
