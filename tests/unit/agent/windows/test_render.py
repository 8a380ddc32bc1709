"""Event XML becomes the evtx package's `{"Event": …}` shape, safely: no DTDs, no entity
expansion, carriage returns kept, and the server flattens the result like an EVTX record."""

from __future__ import annotations

import pytest
from tests.unit.agent.windows.samples import event_xml, logon

from puffin.agent.windows.render import RenderError, render_event_xml, summary
from puffin.ingest.windows import flatten_evtx_record

NS = "xmlns='http://schemas.microsoft.com/win/2004/08/events/event'"
SYSTEM = (
    "<System><Provider Name='Service Control Manager' Guid='{555908d1-a6d7-4695-8e1e-26931d2012f4}'"
    " EventSourceName='Service Control Manager'/><EventID Qualifiers='16384'>7036</EventID>"
    "<Version>0</Version><Level>4</Level><Task>0</Task><Opcode>0</Opcode>"
    "<Keywords>0x8080000000000000</Keywords>"
    "<TimeCreated SystemTime='2024-05-01T10:00:00.1234567Z'/>"
    "<EventRecordID>99</EventRecordID><Correlation/><Execution ProcessID='668' ThreadID='0'/>"
    "<Channel>System</Channel><Computer>WS01</Computer><Security UserID=''/></System>"
)


def test_system_values_are_typed_as_the_event_schema_defines_them():
    event = render_event_xml(logon(7))["Event"]
    system = event["System"]
    assert event["#attributes"] == {
        "xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"
    }
    assert (system["EventID"], system["Version"], system["Level"], system["Task"]) == (
        4624, 2, 0, 12544
    )  # fmt: skip
    assert system["EventRecordID"] == 7
    assert system["Keywords"] == "0x8020000000000000"  # hex stays text, as in EVTX JSON
    assert system["TimeCreated"] == {"#attributes": {"SystemTime": "2024-05-01T10:00:00.1234567Z"}}
    assert system["Security"] is None
    assert system["Provider"]["#attributes"]["Name"] == "Microsoft-Windows-Security-Auditing"
    assert event["EventData"]["IpPort"] == "50412"  # event data stays text


def test_qualifiers_empty_attributes_and_classic_events():
    xml = (
        f"<Event {NS}>{SYSTEM}<EventData><Data Name='param1'>Print Spooler</Data>"
        "<Data Name='param2'>stopped</Data><Binary>5300700000</Binary></EventData></Event>"
    )
    event = render_event_xml(xml)["Event"]
    assert event["System"]["EventID"] == {"#attributes": {"Qualifiers": 16384}, "#text": 7036}
    assert event["System"]["Security"] is None  # its only attribute was empty
    assert event["System"]["Correlation"] is None
    assert event["EventData"] == {
        "param1": "Print Spooler", "param2": "stopped", "Binary": "5300700000"
    }  # fmt: skip
    flat = flatten_evtx_record(render_event_xml(xml))
    assert (flat["EventID"], flat["Channel"], flat["param1"]) == (7036, "System", "Print Spooler")


def test_unnamed_data_items_and_repeated_elements_follow_the_evtx_rules():
    several = f"<Event {NS}>{SYSTEM}<EventData><Data>first</Data><Data></Data><Data>third</Data>" \
              "</EventData></Event>"  # fmt: skip
    assert render_event_xml(several)["Event"]["EventData"] == {
        "Data": {"#text": ["first", "", "third"]}
    }
    one = f"<Event {NS}>{SYSTEM}<EventData><Data>only</Data></EventData></Event>"
    assert render_event_xml(one)["Event"]["EventData"] == {"Data": {"#text": "only"}}
    user = (
        f"<Event {NS}>{SYSTEM}<UserData><LogFileCleared xmlns='http://manifests.microsoft.com/win/"
        "2004/08/windows/eventlog'><SubjectUserName>alice</SubjectUserName><Item>a</Item>"
        "<Item>b</Item><Item>c</Item><Empty/></LogFileCleared></UserData></Event>"
    )
    cleared = render_event_xml(user)["Event"]["UserData"]["LogFileCleared"]
    assert cleared["SubjectUserName"] == "alice"
    assert (cleared["Item"], cleared["Item_1"], cleared["Item_2"]) == ("a", "b", "c")
    assert cleared["Empty"] is None
    assert flatten_evtx_record(render_event_xml(user))["SubjectUserName"] == "alice"


def test_carriage_returns_and_escapes_in_values_are_kept():
    script = "Write-Host 'a'\r\nInvoke-Expression $x <b> & \"c\""
    xml = event_xml("Security", 4104, 1, {"ScriptBlockText": script})
    assert render_event_xml(xml)["Event"]["EventData"]["ScriptBlockText"] == script


def test_characters_xml_cannot_hold_become_replacement_characters():
    xml = event_xml("Security", 4688, 1, {"CommandLine": "cmd\x01.exe\ud800"})
    line = render_event_xml(xml)["Event"]["EventData"]["CommandLine"]
    assert line == "cmd\ufffd.exe\ufffd"


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (
            "<!DOCTYPE Event [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;'>]>"
            f"<Event {NS}><System><Computer>&b;</Computer></System></Event>",
            "document type declaration",
        ),
        (
            "<!DOCTYPE Event SYSTEM 'file:///etc/passwd'><Event><System/></Event>",
            "document type declaration",
        ),
        ("<Event><System>", "not well-formed"),
        ("<Events><Event/></Events>", "not 'Event'"),
        (f"<Event {NS}><EventData/></Event>", "no System"),
        ("<a>" * 80 + "</a>" * 80, "deeper"),
    ],
)
def test_what_is_not_an_event_is_refused_with_a_reason(xml, reason):
    with pytest.raises(RenderError, match=reason):
        render_event_xml(xml)


def test_the_summary_is_one_line_with_the_event_data():
    event = render_event_xml(event_xml("Security", 4104, 3, {"ScriptBlockText": "a\r\nb"}))
    line = summary(event["Event"])
    assert line == "Security 4104 Microsoft-Windows-Security-Auditing on WS01.corp.example: " \
                   "ScriptBlockText=a b"  # fmt: skip
    assert "\n" not in line
    long = render_event_xml(event_xml("Security", 1, 1, {"A": "x" * 5000, "B": "y" * 5000}))
    assert len(summary(long["Event"])) <= 8192
