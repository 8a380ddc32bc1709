"""The inventory describes this real machine in one bounded snapshot and reports packages,
ports and users that changed since the last one, never a flood from an unreadable file."""

from __future__ import annotations

import json
import os
import pwd
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from puffin.agent.inventory import InventoryCollector
from puffin.agent.outbox import Outbox

DPKG_STATUS = Path("/var/lib/dpkg/status")

OS_RELEASE = 'PRETTY_NAME="Puffin Test Linux 1"\nNAME="Puffin Test Linux"\nID=ptl\nVERSION_ID="1"\n'
PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n"
)


def _package(name: str, version: str, status: str = "install ok installed") -> str:
    return (
        f"Package: {name}\nStatus: {status}\nPriority: optional\nArchitecture: amd64\n"
        f"Version: {version}\nDescription: {name} for tests\n a continuation line\n\n"
    )


@pytest.fixture
def machine(tmp_path: Path) -> dict[str, Path]:
    """Fake os-release, passwd and dpkg status files that a test can change."""
    files = {
        "os_release": tmp_path / "os-release",
        "passwd": tmp_path / "passwd",
        "dpkg_status": tmp_path / "status",
    }
    files["os_release"].write_text(OS_RELEASE)
    files["passwd"].write_text(PASSWD)
    files["dpkg_status"].write_text(
        _package("openssh-server", "1:9.2p1-2")
        + _package("curl", "7.88.1-10")
        + _package("old-tool", "1.0", status="deinstall ok config-files")
    )
    state = tmp_path / "state"
    state.mkdir()
    files["state"] = state
    return files


def _collector(machine: dict[str, Path], **options: object) -> InventoryCollector:
    return InventoryCollector(
        machine["state"],
        os_release=machine["os_release"],
        passwd=machine["passwd"],
        dpkg_status=machine["dpkg_status"],
        **options,
    )


def _events(outbox: Outbox) -> list[dict]:
    batch = outbox.next_batch(1000)
    if batch is None:
        return []
    outbox.acknowledge(batch)
    return batch.events


def test_a_snapshot_of_this_machine(tmp_path):
    if not DPKG_STATUS.is_file():
        pytest.skip("this machine has no dpkg")
    outbox = Outbox(tmp_path / "o.db")
    collector = InventoryCollector.from_config({"max_processes": 5}, tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert collector.collect(outbox, 0.0) == 1
    (event,) = _events(outbox)
    inventory = event["inventory"]
    assert (event["module"], event["title"]) == ("inventory", "Inventory")
    assert inventory["os"]["name"]
    assert inventory["hardware"]["cpu_logical"] >= 1
    assert inventory["hardware"]["memory_bytes"] > 0
    assert any(i["name"] == "lo" and "127.0.0.1" in i["ipv4"] for i in inventory["network"])
    (ours,) = [p for p in inventory["ports"] if p["port"] == port]
    assert (ours["protocol"], ours["address"], ours["pid"]) == ("tcp", "127.0.0.1", os.getpid())
    assert len(inventory["processes"]) == 5
    assert inventory["processes_total"] > 5
    names = {p["name"] for p in inventory["packages"]}
    assert "dpkg" in names
    assert all(p["source"] in ("dpkg", "rpm") for p in inventory["packages"])
    assert any(u["name"] == "root" and u["uid"] == 0 for u in inventory["users"])
    assert "packages" in event["full_log"]
    assert len(json.dumps(event)) < 2_000_000


def test_the_first_snapshot_reports_no_changes_and_later_ones_report_what_changed(machine):
    outbox = Outbox(machine["state"] / "o.db")
    collector = _collector(machine, interval=3600)
    assert collector.collect(outbox, 0.0) == 1
    (snapshot,) = _events(outbox)
    assert snapshot["inventory"]["os"]["pretty_name"] == "Puffin Test Linux 1"
    assert [p["name"] for p in snapshot["inventory"]["packages"]] == ["openssh-server", "curl"]
    assert collector.collect(outbox, 10.0) == 0  # not due

    machine["dpkg_status"].write_text(
        _package("openssh-server", "1:9.2p1-2+deb12u3") + _package("netcat-openbsd", "1.219-1")
    )
    with machine["passwd"].open("a") as handle:
        handle.write("backdoor:x:0:0::/tmp:/bin/sh\n")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        collector.collect(outbox, 3600.0)
    events = _events(outbox)[1:]  # after the snapshot
    lines = [e["full_log"] for e in events if "Port" not in e["title"]]
    assert lines == [
        "Package installed: netcat-openbsd 1.219-1 (amd64, dpkg)",
        "Package removed: curl 7.88.1-10 (amd64, dpkg)",
        "Package updated: openssh-server 1:9.2p1-2 -> 1:9.2p1-2+deb12u3 (amd64, dpkg)",
        "User added: backdoor (uid 0, home /tmp, shell /bin/sh)",
    ]
    opened = [e for e in events if e["title"] == "Port opened" and e["port"] == port]
    assert opened[0]["pid"] == os.getpid()

    restarted = _collector(machine)  # the previous snapshot is read from the state dir
    machine["passwd"].write_text(PASSWD)
    restarted.collect(outbox, 0.0)
    events = _events(outbox)
    removed = [e for e in events if e["title"] == "User removed"]
    assert [(e["user"], e["uid"]) for e in removed] == [("backdoor", 0)]
    assert any(e["title"] == "Port closed" and e["port"] == port for e in events)


def test_an_unreadable_package_database_is_reported_once_not_as_removals(machine):
    outbox = Outbox(machine["state"] / "o.db")
    _collector(machine).collect(outbox, 0.0)
    _events(outbox)

    machine["dpkg_status"].unlink()
    machine["dpkg_status"].mkdir()  # present but unreadable as a file
    collector = _collector(machine, interval=60)
    collector.collect(outbox, 0.0)
    collector.collect(outbox, 60.0)
    events = _events(outbox)
    titles = [e["title"] for e in events]
    assert "Package removed" not in titles
    assert titles.count("Inventory incomplete") == 1
    notice = events[titles.index("Inventory incomplete")]
    assert "IsADirectoryError" in notice["sections"]["packages"]
    assert "packages" not in events[0]["inventory"]


def test_the_snapshot_file_is_replaced_whole(machine):
    outbox = Outbox(machine["state"] / "o.db")
    _collector(machine).collect(outbox, 0.0)
    saved = json.loads((machine["state"] / "inventory.json").read_text())
    assert [p["name"] for p in saved["inventory"]["packages"]] == ["openssh-server", "curl"]
    leftovers = [p.name for p in machine["state"].iterdir() if p.name.startswith(".inventory-")]
    assert leftovers == []


def _as_nobody(work: str, function: Callable[[], Any]) -> Any:
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
def test_an_unprivileged_agent_still_takes_a_snapshot():
    with tempfile.TemporaryDirectory() as work:
        os.chmod(work, 0o777)
        secret = Path(work) / "passwd"
        secret.write_text(PASSWD)
        secret.chmod(0o600)  # unreadable for nobody

        def collect() -> list[dict[str, Any]]:
            outbox = Outbox(Path(work) / "nobody.db")
            collector = InventoryCollector(Path(work), passwd=secret, interval=60)
            collector.collect(outbox, 0.0)
            collector.collect(outbox, 60.0)
            return outbox.next_batch().events

        events = _as_nobody(work, collect)
    titles = [e["title"] for e in events]
    assert titles == ["Inventory", "Inventory incomplete", "Inventory"]
    inventory = events[0]["inventory"]
    assert "users" not in inventory
    assert inventory["processes_total"] > 1
    assert "PermissionError" in events[1]["sections"]["users"]
