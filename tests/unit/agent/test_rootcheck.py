"""Rootkit checks against fake trees with planted evidence, and once each against this
machine (where findings are possible, so only completion is asserted)."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from puffin.agent.outbox import Outbox
from puffin.agent.rootcheck import (
    RootcheckCollector,
    check_dev,
    check_hidden_ports,
    check_hidden_processes,
    check_kernel_modules,
    check_permissions,
    check_promiscuous_interfaces,
    check_signature_files,
    check_trojans,
    findings,
    load_signatures,
)

TCP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt\n"


def write(path: Path, content: str | bytes = "", mode: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    if mode is not None:
        os.chmod(path, mode)
    return path


def test_the_signature_list_names_many_rootkits():
    signatures = load_signatures()
    files = signatures["files"]
    assert len(files) >= 30
    assert len({entry["rootkit"] for entry in files}) >= 15
    assert all(entry["path"].startswith("/") for entry in files)
    assert all(entry["binaries"] and entry["strings"] for entry in signatures["trojans"])


def test_a_planted_rootkit_file_and_a_preloaded_library_are_found(tmp_path):
    (tmp_path / "usr/src/.puta").mkdir(parents=True)
    write(tmp_path / "etc/ld.so.preload", "/lib/x86_64-linux-gnu/libhide.so\n")
    found = findings(check_signature_files(root=tmp_path))
    assert [(f.details["path"], f.details.get("rootkit")) for f in found] == [
        ("/usr/src/.puta", "t0rn"),
        ("/etc/ld.so.preload", None),
    ]
    assert found[0].title == "Possible rootkit: t0rn"
    assert "libhide.so" in found[1].message
    assert findings(check_signature_files(root=tmp_path / "clean")) == []


def test_a_trojaned_ls_is_found_and_a_clean_ps_is_not(tmp_path):
    write(tmp_path / "usr/bin/ls", b"\x7fELF\0\0...%s\0/dev/ptyr\0...")
    write(tmp_path / "usr/bin/ps", b"\x7fELF\0\0/proc/%d/stat\0/dev/pts\0")
    os.symlink("usr/bin", tmp_path / "bin")  # a merged /usr: /bin/ls is /usr/bin/ls
    found = findings(check_trojans(root=tmp_path))
    assert len(found) == 1
    assert found[0].details == {
        "path": "/usr/bin/ls",
        "rootkit": "Linux Rootkit (lrk)",
        "string": "/dev/ptyr",
    }


def test_rootkit_modules_and_modules_hidden_from_proc_are_found(tmp_path):
    proc, sys = tmp_path / "proc", tmp_path / "sys"
    write(proc / "modules", "ext4 1 0 - Live 0x0\ndiamorphine 16384 0 - Live 0x0\n")
    write(sys / "module/ext4/initstate", "live\n")
    write(sys / "module/sneaky/initstate", "live\n")
    write(sys / "module/builtin_thing/parameters/x", "1")  # built in: no initstate
    found = findings(check_kernel_modules(proc=proc, sys=sys))
    assert [(f.title, f.details["module_name"]) for f in found] == [
        ("Possible rootkit: Diamorphine", "diamorphine"),
        ("Hidden kernel module", "sneaky"),
    ]


def test_a_process_missing_from_proc_is_hidden(tmp_path):
    me = os.getpid()
    (tmp_path / "empty_proc").mkdir()
    found = findings(check_hidden_processes(proc=tmp_path / "empty_proc", pids=range(me, me + 1)))
    assert [(f.title, f.details["pid"]) for f in found] == [("Hidden process", me)]

    (tmp_path / "proc" / str(me)).mkdir(parents=True)
    assert findings(check_hidden_processes(proc=tmp_path / "proc", pids=range(me, me + 1))) == []


def test_threads_are_not_hidden_processes():
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        tid = thread.native_id
        assert tid is not None
        assert str(tid) not in os.listdir("/proc")  # /proc lists thread-group leaders only
        os.kill(tid, 0)  # ...yet the kernel answers for the thread id
        assert findings(check_hidden_processes(pids=range(tid, tid + 1))) == []
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_a_port_in_use_that_proc_does_not_show_is_hidden(tmp_path, protocol):
    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as server:
        server.bind(("127.0.0.1", 0))
        if protocol == "tcp":
            server.listen()
        port = server.getsockname()[1]
        write(tmp_path / "net" / protocol, TCP_HEADER)
        ports = range(port, port + 1)
        found = findings(check_hidden_ports(proc=tmp_path, ports=ports, protocols=(protocol,)))
        assert [(f.details["port"], f.details["protocol"]) for f in found] == [(port, protocol)]
        real = findings(check_hidden_ports(ports=ports, protocols=(protocol,)))
        assert real == []  # the real /proc/net shows the socket


def test_a_promiscuous_interface_is_found_but_not_a_bridge_port(tmp_path):
    write(tmp_path / "class/net/eth0/flags", "0x1103\n")
    write(tmp_path / "class/net/lo/flags", "0x9\n")
    write(tmp_path / "class/net/veth1/flags", "0x1103\n")
    (tmp_path / "class/net/veth1/brport").mkdir()
    found = findings(check_promiscuous_interfaces(sys=tmp_path))
    assert [f.details["interface"] for f in found] == ["eth0"]


def test_unexpected_files_in_dev_are_found(tmp_path):
    dev = tmp_path / "dev"
    write(dev / "sdz9", "not a device")
    write(dev / ".hdlc/sniff.log", "captured")
    write(dev / ".udev/rules.d/x", "udev state is expected")
    write(dev / "shm/kworker", b"\x7fELF\2\1\1")
    write(dev / "shm/PostgreSQL.1234", b"\0" * 64)
    write(dev / "pts/odd", "devpts is a separate file system")
    write(dev / "MAKEDEV", "#!/bin/sh")
    os.mkfifo(dev / "initctl")
    os.symlink("/proc/self/fd", dev / "fd")
    found = {(f.title, f.details["path"]) for f in findings(check_dev(root=tmp_path))}
    assert found == {
        ("File in /dev", "/dev/sdz9"),
        ("Hidden entry in /dev", "/dev/.hdlc"),
        ("File in /dev", "/dev/.hdlc/sniff.log"),
        ("Executable in shared memory", "/dev/shm/kworker"),
    }


def test_world_writable_and_unexpected_setuid_files_in_system_dirs_are_found(tmp_path):
    write(tmp_path / "usr/bin/passwd", b"\x7fELF", 0o4755)
    write(tmp_path / "usr/lib/x86_64-linux-gnu/utempter/utempter", b"\x7fELF", 0o2755)
    write(tmp_path / "usr/bin/rootshell", b"\x7fELF", 0o4755)
    write(tmp_path / "usr/sbin/grpthing", b"\x7fELF", 0o2755)
    write(tmp_path / "usr/bin/editable", b"\x7fELF", 0o777)
    write(tmp_path / "usr/bin/fine", b"\x7fELF", 0o755)
    (tmp_path / "usr/lib/open").mkdir(mode=0o777)
    os.chmod(tmp_path / "usr/lib/open", 0o777)
    os.symlink("usr/bin", tmp_path / "bin")
    found = {(f.title, f.details["path"]) for f in findings(check_permissions(root=tmp_path))}
    assert found == {
        ("Unexpected set-uid program", "/usr/bin/rootshell"),
        ("Unexpected set-gid program", "/usr/sbin/grpthing"),
        ("World-writable entry in a system directory", "/usr/bin/editable"),
        ("World-writable entry in a system directory", "/usr/lib/open"),
    }
    allowed = check_permissions(root=tmp_path, setuid_allow=("/usr/*",))
    assert {f.details["path"] for f in findings(allowed)} == {"/usr/bin/editable", "/usr/lib/open"}


@pytest.mark.parametrize(
    "check",
    [
        check_signature_files,
        check_trojans,
        check_kernel_modules,
        check_hidden_processes,
        check_hidden_ports,
        check_promiscuous_interfaces,
        check_dev,
        check_permissions,
    ],
)
def test_each_check_completes_on_this_machine(check):
    result = findings(check())
    assert isinstance(result, list)
    assert all(item.check and item.message for item in result)


def fake_root(tmp_path: Path) -> dict[str, str]:
    root, proc, sys = tmp_path / "root", tmp_path / "proc", tmp_path / "sys"
    (root / "usr/src/.puta").mkdir(parents=True)
    write(root / "usr/bin/backdoor", b"\x7fELF", 0o4755)
    write(root / "dev/.hdlc", "x")
    write(proc / "net/tcp", TCP_HEADER)
    write(sys / "class/net/eth0/flags", "0x1103")
    return {"root": str(root), "proc": str(proc), "sys": str(sys)}


def test_the_collector_runs_all_checks_in_slices_then_waits_for_the_interval(tmp_path):
    outbox = Outbox(tmp_path / "outbox.db")
    checks = ["files", "trojans", "modules", "ports", "interfaces", "dev", "permissions"]
    config = {**fake_root(tmp_path), "checks": checks, "interval": 100, "ports": "1-8192"}
    config["budget_seconds"] = 0
    collector = RootcheckCollector.from_config(config, tmp_path)
    calls = 0
    while calls == 0 or collector.running:
        collector.collect(outbox, 0.0)
        calls += 1
    assert calls >= 16  # one slice per call: 1,024 ports per slice, for tcp and udp
    events = outbox.next_batch(100).events
    assert all(event["module"] == "rootcheck" for event in events)
    titles = {event["title"] for event in events}
    assert {
        "Possible rootkit: t0rn",
        "Unexpected set-uid program",
        "File in /dev",
        "Promiscuous network interface",
    } <= titles
    assert events[-1]["title"] == "Rootcheck finished"
    assert events[-1]["findings"] == len(events) - 1
    assert outbox.position("rootcheck")

    assert collector.collect(outbox, 50.0) == 0  # not due yet
    collector.collect(outbox, 100.0)
    assert collector.running


def test_a_failing_check_is_reported_and_the_others_still_run(tmp_path):
    paths = fake_root(tmp_path)
    write(Path(paths["proc"]) / "sys/kernel/pid_max", "not a number")
    outbox = Outbox(tmp_path / "outbox.db")
    config = {**paths, "checks": ["processes", "files"], "budget_seconds": 5}
    collector = RootcheckCollector.from_config(config, tmp_path)
    while collector.collect(outbox, 0.0) == 0 or collector.running:
        pass
    events = outbox.next_batch(100).events
    assert events[0]["title"] == "Rootcheck error"
    assert events[0]["check"] == "processes"
    assert events[1]["title"] == "Possible rootkit: t0rn"


def test_a_bad_configuration_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown checks"):
        RootcheckCollector.from_config({"checks": ["files", "tarot"]}, tmp_path)
    with pytest.raises(ValueError, match="ports"):
        RootcheckCollector.from_config({"ports": "2000-10"}, tmp_path)
