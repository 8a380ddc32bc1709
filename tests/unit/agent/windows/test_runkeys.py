"""Registry run keys: a silent baseline, then added / modified / deleted values, stored with
the snapshot in one outbox transaction; user hives followed across log-offs; read through
the `winreg` seam, here a fake `winreg` module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.unit.agent.windows.fake_winreg import (
    KEY_WOW64_64KEY,
    REG_BINARY,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_MULTI_SZ,
    FakeWinreg,
)

from puffin.agent.collectors import Collectors
from puffin.agent.outbox import Outbox
from puffin.agent.windows.registry import WinregRegistry
from puffin.agent.windows.runkeys import RunKeyCollector, RunKeyConfig

RUN = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\Run"
RUN32 = r"HKLM\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Run"
WINLOGON = r"HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon"
ALICE = "S-1-5-21-1004336348-1177238915-682003330-1001"
USER_RUN = rf"HKU\{ALICE}\Software\Microsoft\Windows\CurrentVersion\Run"


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


@pytest.fixture
def winreg() -> FakeWinreg:
    fake = FakeWinreg()
    fake.set(RUN, "SecurityHealth", r"%windir%\system32\SecurityHealthSystray.exe", REG_EXPAND_SZ)
    fake.set(RUN32, "Teams", r'"C:\Program Files (x86)\Teams\Update.exe" --processStart')
    fake.set(WINLOGON, "Shell", "explorer.exe")
    fake.set(WINLOGON, "Userinit", "C:\\Windows\\system32\\userinit.exe,")
    fake.set(WINLOGON, "LastUsedUsername", "alice")
    fake.create_key(rf"HKU\{ALICE}")
    fake.create_key(rf"HKU\{ALICE}_Classes")
    fake.create_key(r"HKU\.DEFAULT")
    return fake


def _collector(winreg: FakeWinreg, **config: Any) -> RunKeyCollector:
    return RunKeyCollector(RunKeyConfig.from_mapping(config), WinregRegistry(winreg))


def _events(outbox: Outbox) -> list[dict[str, Any]]:
    rows = outbox._db.execute("SELECT body FROM event ORDER BY id").fetchall()
    return [json.loads(body) for (body,) in rows]


def _changes(outbox: Outbox) -> list[tuple[str, str]]:
    return [
        (e["registry_event"], e["TargetObject"]) for e in _events(outbox) if "registry_event" in e
    ]


def test_the_first_read_is_a_silent_baseline_then_each_change_is_an_event(winreg, outbox):
    collector = _collector(winreg)
    collector.collect(outbox, now=0.0)
    [baseline] = _events(outbox)
    assert baseline["title"] == "Registry baseline"
    assert baseline["values"] == 4  # Winlogon: only Shell and Userinit of its three values
    assert RUN in baseline["keys"]
    assert USER_RUN in baseline["keys"]

    winreg.set(RUN, "Updater", r"C:\Users\Public\updater.exe")
    winreg.set(WINLOGON, "Shell", r"explorer.exe, C:\ProgramData\evil.exe")
    winreg.delete(RUN32, "Teams")
    winreg.set(WINLOGON, "LastUsedUsername", "bob")  # not a watched value
    collector.collect(outbox, now=300.0)
    assert _changes(outbox) == [  # keys in sorted order
        ("modified", rf"{WINLOGON}\Shell"),
        ("added", rf"{RUN}\Updater"),
        ("deleted", rf"{RUN32}\Teams"),
    ]
    modified, added, deleted = [e for e in _events(outbox) if "registry_event" in e]
    assert added["title"] == "Registry value added"
    assert (added["registry_key"], added["registry_value"]) == (RUN, "Updater")
    assert (added["value_type"], added["data"]) == ("REG_SZ", r"C:\Users\Public\updater.exe")
    assert (added["EventType"], added["Details"]) == ("SetValue", r"C:\Users\Public\updater.exe")
    assert (
        added["full_log"] == rf"Registry value added: {RUN}\Updater = C:\Users\Public\updater.exe"
    )
    assert deleted["EventType"] == "DeleteValue"
    assert deleted["data"].endswith("--processStart")  # what it was
    assert modified["data_before"] == "explorer.exe"
    assert modified["full_log"].endswith("(was explorer.exe)")
    # Every key was opened in the 64-bit view and every handle closed again.
    assert all(access & KEY_WOW64_64KEY for _, _, access in winreg.opened)
    assert all(handle.closed for handle in winreg.handles)


def test_nothing_is_read_before_the_interval_and_an_unchanged_read_says_nothing(winreg, outbox):
    collector = _collector(winreg, interval=60)
    collector.collect(outbox, now=0.0)
    opened = len(winreg.opened)
    winreg.set(RUN, "Later", "later.exe")
    assert collector.collect(outbox, now=59.0) == 0
    assert len(winreg.opened) == opened
    assert collector.collect(outbox, now=60.0) == 1
    assert collector.collect(outbox, now=120.0) == 0


def test_a_change_made_while_the_agent_was_stopped_is_reported_once(winreg, outbox):
    _collector(winreg).collect(outbox, now=0.0)
    winreg.set(RUN, "Persist", r"C:\Temp\p.exe")  # while the agent is down
    _collector(winreg).collect(outbox, now=0.0)
    _collector(winreg).collect(outbox, now=0.0)
    assert _changes(outbox) == [("added", rf"{RUN}\Persist")]
    snapshot = json.loads(outbox.position("registry"))
    assert snapshot["keys"][RUN]["Persist"] == {"type": "REG_SZ", "data": r"C:\Temp\p.exe"}


def test_a_failed_outbox_write_keeps_the_old_snapshot_so_the_change_comes_again(
    winreg, outbox, monkeypatch
):
    collector = _collector(winreg, interval=10)
    collector.collect(outbox, now=0.0)
    winreg.set(RUN, "Persist", "p.exe")
    real_add = outbox.add

    def full_disk(*_: Any, **__: Any) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(outbox, "add", full_disk)
    with pytest.raises(OSError, match="disk full"):
        collector.collect(outbox, now=10.0)
    monkeypatch.setattr(outbox, "add", real_add)
    collector.collect(outbox, now=20.0)
    assert _changes(outbox) == [("added", rf"{RUN}\Persist")]


def test_user_hives_are_read_under_hkey_users_and_kept_while_their_user_is_logged_off(
    winreg, outbox
):
    winreg.set(USER_RUN, "OneDrive", r'"C:\Users\alice\AppData\Local\OneDrive.exe" /background')
    collector = _collector(winreg, interval=10)
    collector.collect(outbox, now=0.0)
    read = {sub for _, sub, _ in winreg.opened}
    assert not any("_Classes" in sub or ".DEFAULT" in sub for sub in read)

    hive = winreg.roots[winreg.HKEY_USERS].children.pop(ALICE.lower())  # alice logs off
    collector.collect(outbox, now=10.0)
    assert _changes(outbox) == []  # an unloaded hive is not every value deleted
    assert USER_RUN in json.loads(outbox.position("registry"))["keys"]

    winreg.roots[winreg.HKEY_USERS].children[ALICE.lower()] = hive  # she logs on again…
    winreg.set(USER_RUN, "Helper", r"C:\Users\alice\AppData\Roaming\helper.exe")  # …changed
    collector.collect(outbox, now=20.0)
    [added] = [e for e in _events(outbox) if "registry_event" in e]
    assert added["TargetObject"] == rf"{USER_RUN}\Helper"
    assert added["user_sid"] == ALICE


def test_a_refused_key_is_reported_once_and_compared_again_when_readable(winreg, outbox):
    collector = _collector(winreg, interval=10)
    collector.collect(outbox, now=0.0)
    winreg.deny(RUN)
    collector.collect(outbox, now=10.0)
    collector.collect(outbox, now=20.0)
    incomplete = [e for e in _events(outbox) if e["title"] == "Registry incomplete"]
    assert len(incomplete) == 1
    assert "access denied" in incomplete[0]["errors"][RUN]
    winreg.create_key(RUN).denied = False
    winreg.delete(RUN, "SecurityHealth")
    collector.collect(outbox, now=30.0)
    assert _changes(outbox) == [("deleted", rf"{RUN}\SecurityHealth")]


def test_a_key_created_later_reports_its_values_as_added(winreg, outbox):
    runonce = r"HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\RunOnce"
    collector = _collector(winreg, interval=10)
    collector.collect(outbox, now=0.0)  # RunOnce does not exist: recorded as empty
    winreg.set(runonce, "", r"C:\Temp\once.exe")
    collector.collect(outbox, now=10.0)
    [added] = [e for e in _events(outbox) if "registry_event" in e]
    assert added["TargetObject"] == rf"{runonce}\(Default)"
    winreg.delete_key(runonce)
    collector.collect(outbox, now=20.0)
    assert _changes(outbox)[-1] == ("deleted", rf"{runonce}\(Default)")


def test_values_of_every_type_are_plain_data_with_sysmon_style_details(winreg, outbox):
    key = r"HKLM\SOFTWARE\Contoso\Agent"
    collector = _collector(winreg, keys=[key], defaults=False, interval=10)
    collector.collect(outbox, now=0.0)
    winreg.set(key, "Enabled", 1, REG_DWORD)
    winreg.set(key, "Paths", ["C:\\a", "C:\\b"], REG_MULTI_SZ)
    winreg.set(key, "Blob", b"\x00\xffAB", REG_BINARY)
    collector.collect(outbox, now=10.0)
    found = {e["registry_value"]: e for e in _events(outbox) if "registry_event" in e}
    assert (found["Enabled"]["data"], found["Enabled"]["Details"]) == (1, "DWORD (0x00000001)")
    assert found["Paths"]["data"] == ["C:\\a", "C:\\b"]
    assert (found["Blob"]["data"], found["Blob"]["Details"]) == ("00ff4142", "Binary Data")
    assert {e["value_type"] for e in found.values()} == {"REG_DWORD", "REG_MULTI_SZ", "REG_BINARY"}


def test_extra_keys_and_value_filters_are_configured_and_checked():
    config = RunKeyConfig.from_mapping(
        {"keys": ["hkcu/Software/Contoso/Run", {"key": "HKEY_LOCAL_MACHINE\\SOFTWARE\\X",
                                                "values": ["Start"]}]}
    )  # fmt: skip
    assert config.keys[-2].key == r"HKCU\Software\Contoso\Run"
    assert (config.keys[-1].key, config.keys[-1].values) == (r"HKLM\SOFTWARE\X", ("Start",))
    assert any(k.key == RUN for k in config.keys)
    for bad, reason in [
        ({"keys": "HKLM\\X"}, "must be a list"),
        ({"keys": ["HKCR\\X"]}, "must start with"),
        ({"keys": ["HKLM\\"]}, "must start with"),
        ({"keys": [{"key": "HKLM\\X", "values": "Start"}]}, "list of names"),
        ({"defaults": False}, "from 1 to"),
        ({"interval": 1}, "at least 10"),
        ({"interval": "often"}, "interval"),
    ]:
        with pytest.raises(ValueError, match=reason):
            RunKeyConfig.from_mapping(bad)


@pytest.mark.skipif(__import__("sys").platform == "win32", reason="checks the non-Windows refusal")
def test_on_linux_the_section_is_refused_with_a_reason(tmp_path):
    with pytest.raises(ValueError, match="only on Windows"):
        RunKeyCollector.from_config({}, tmp_path)
    collectors = Collectors(tmp_path)
    collectors.configure({"registry": {}}, local={})
    assert any("registry: the Windows registry exists only on Windows" in p
               for p in collectors.problems)  # fmt: skip
    assert "registry" not in collectors.running


def test_the_factory_can_be_given_a_registry(tmp_path, winreg, outbox):
    collector = RunKeyCollector.from_config(
        {"interval": 60}, tmp_path, registry_factory=lambda: WinregRegistry(winreg)
    )
    assert collector.collect(outbox, now=0.0) == 1
    assert collector.status()["unreadable"] == []
