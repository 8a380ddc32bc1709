"""The Windows inventory: the OS from the registry, programs from the Uninstall keys (not
system components or updates), local accounts, and change events against the last
snapshot; driven through a fake `winreg` and recorded NetUserEnum rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.unit.agent.windows.fake_winreg import REG_DWORD, FakeWinreg

from puffin.agent.outbox import Outbox
from puffin.agent.windows.inventory import (
    WindowsInventoryCollector,
    account_from_user_info,
    programs,
    windows_os,
)
from puffin.agent.windows.registry import WinregRegistry

NT = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion"
UNINSTALL = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall"
UNINSTALL32 = r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall"
ALICE = "S-1-5-21-1004336348-1177238915-682003330-1001"
USER_UNINSTALL = rf"HKU\{ALICE}\Software\Microsoft\Windows\CurrentVersion\Uninstall"
# What NetUserEnum(None, 3, FILTER_NORMAL_ACCOUNT) gives, trimmed to the fields we read.
USERS = [
    {"name": "Administrator", "user_id": 500, "priv": 2, "flags": 0x0203, "last_logon": 0,
     "full_name": "", "profile": ""},
    {"name": "alice", "user_id": 1001, "priv": 1, "flags": 0x0201, "last_logon": 1714557600,
     "full_name": "Alice Example", "profile": r"C:\Users\alice"},
]  # fmt: skip


def _program(winreg: FakeWinreg, root: str, key: str, **values: Any) -> None:
    for name, data in values.items():
        winreg.set(rf"{root}\{key}", name, data, REG_DWORD if isinstance(data, int) else 1)


@pytest.fixture
def winreg() -> FakeWinreg:
    fake = FakeWinreg()
    for name, data in {
        "ProductName": "Windows 10 Pro",
        "DisplayVersion": "23H2",
        "CurrentBuildNumber": "22631",
        "EditionID": "Professional",
    }.items():
        fake.set(NT, name, data)  # fmt: skip
    fake.set(NT, "UBR", 3447, REG_DWORD)
    fake.set(NT, "InstallDate", 1700000000, REG_DWORD)
    fake.set(r"HKLM\HARDWARE\DESCRIPTION\System\CentralProcessor\0", "ProcessorNameString",
             "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz   ")  # fmt: skip
    _program(fake, UNINSTALL, "{7-Zip}", DisplayName="7-Zip 23.01 (x64)", DisplayVersion="23.01",
             Publisher="Igor Pavlov")  # fmt: skip
    _program(fake, UNINSTALL, "KB5034441", DisplayName="Security Update for Windows",
             ReleaseType="Security Update")  # fmt: skip
    _program(fake, UNINSTALL, "Connection Manager", SystemComponent=1, DisplayName="CM")
    _program(fake, UNINSTALL, "NoName", UninstallString="x.exe")
    _program(fake, UNINSTALL32, "Notepad++", DisplayName="Notepad++ (32-bit x86)",
             DisplayVersion="8.6.2")  # fmt: skip
    _program(fake, UNINSTALL32, "Notepad++ plugin", DisplayName="Plugin",
             ParentKeyName="Notepad++")  # fmt: skip
    _program(fake, USER_UNINSTALL, "Zoom", DisplayName="Zoom", DisplayVersion="5.17.5")
    fake.create_key(rf"HKU\{ALICE}_Classes")
    return fake


def _collector(tmp_path: Path, winreg: FakeWinreg, users: list[dict[str, Any]]):
    return WindowsInventoryCollector.from_config(
        {"interval": 3600},
        tmp_path,
        registry_factory=lambda: WinregRegistry(winreg),
        accounts=lambda: [account_from_user_info(user) for user in users],
    )


def _events(outbox: Outbox) -> list[dict[str, Any]]:
    rows = outbox._db.execute("SELECT body FROM event ORDER BY id").fetchall()
    return [json.loads(body) for (body,) in rows]


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_the_os_is_read_from_the_registry_and_windows_11_called_so(winreg):
    facts = windows_os(WinregRegistry(winreg))
    assert facts["name"] == "Windows 11 Pro"  # ProductName still says 10 on Windows 11
    assert (facts["version"], facts["build"], facts["edition"]) == ("23H2", "22631.3447",
                                                                    "Professional")  # fmt: skip
    assert facts["pretty_name"] == "Windows 11 Pro 23H2 (build 22631.3447)"
    assert facts["installed"] == "2023-11-14T22:13:20Z"


def test_programs_are_what_apps_and_features_lists(winreg):
    listed = programs(WinregRegistry(winreg))
    assert [(p["name"], p["version"], p["architecture"], p["source"]) for p in listed] == [
        ("7-Zip 23.01 (x64)", "23.01", "x64", "programs"),
        ("Notepad++ (32-bit x86)", "8.6.2", "x86", "programs"),
        ("Zoom", "5.17.5", "", f"programs:{ALICE}"),
    ]
    assert listed[0]["publisher"] == "Igor Pavlov"


def test_a_snapshot_then_program_and_account_changes(tmp_path, winreg, outbox):
    _collector(tmp_path, winreg, USERS).collect(outbox, now=0.0)
    [snapshot] = _events(outbox)
    inventory = snapshot["inventory"]
    assert snapshot["title"] == "Inventory"
    assert snapshot["full_log"].startswith(
        "inventory: Windows 11 Pro 23H2 (build 22631.3447), 3 packages"
    )
    assert inventory["hardware"]["cpu_model"] == "Intel(R) Core(TM) i7-1185G7 @ 3.00GHz"
    admin, alice = inventory["users"]
    assert (admin["disabled"], admin["administrator"], admin["last_logon"]) == (True, True, None)
    assert (alice["uid"], alice["home"]) == (1001, r"C:\Users\alice")
    assert alice["last_logon"] == "2024-05-01T10:00:00Z"
    assert inventory["processes_total"] >= 1
    assert "ports" in inventory

    _program(winreg, UNINSTALL, "{AnyDesk}", DisplayName="AnyDesk", DisplayVersion="8.0.8")
    winreg.set(rf"{UNINSTALL32}\Notepad++", "DisplayVersion", "8.6.4")
    users = [{**USERS[0], "flags": 0x0201}, {**USERS[1], "priv": 2},
             {"name": "svc-backup", "user_id": 1002, "priv": 1, "flags": 0x0201}]  # fmt: skip
    _collector(tmp_path, winreg, users).collect(outbox, now=0.0)  # after a restart
    # Packages and users only: this machine's real ports may open and close meanwhile.
    changes = [e for e in _events(outbox)[1:] if e["title"].startswith(("Package", "User"))]
    assert [(e["title"], e.get("package") or e.get("user")) for e in changes] == [
        ("Package installed", "AnyDesk"),
        ("Package updated", "Notepad++ (32-bit x86)"),
        ("User added", "svc-backup"),
        ("User changed", "Administrator"),
        ("User changed", "alice"),
    ]
    updated = changes[1]
    assert (updated["version"], updated["previous_version"]) == ("8.6.4", "8.6.2")
    assert changes[3]["changed"] == ["disabled"]
    assert changes[3]["disabled"] is False
    assert (
        changes[4]["full_log"]
        == "User changed: alice (rid 1001, administrator); changed: administrator"
    )


def test_an_unreadable_account_list_is_left_out_not_every_user_removed(tmp_path, winreg, outbox):
    _collector(tmp_path, winreg, USERS).collect(outbox, now=0.0)

    def refused() -> list[dict[str, Any]]:
        raise OSError("NetUserEnum failed: (5, 'NetUserEnum', 'Access is denied.')")

    collector = WindowsInventoryCollector.from_config(
        {}, tmp_path, registry_factory=lambda: WinregRegistry(winreg), accounts=refused
    )
    collector.collect(outbox, now=0.0)
    titles = [e["title"] for e in _events(outbox)]
    assert "User removed" not in titles
    [incomplete] = [e for e in _events(outbox) if e["title"] == "Inventory incomplete"]
    assert "Access is denied" in incomplete["sections"]["users"]
    assert collector.status()["unreadable"] == ["users"]


def test_on_linux_the_windows_inventory_refuses_without_its_seams(tmp_path):
    if __import__("sys").platform == "win32":
        pytest.skip("checks the non-Windows refusal")
    with pytest.raises(ValueError, match="only on Windows"):
        WindowsInventoryCollector.from_config({}, tmp_path)
