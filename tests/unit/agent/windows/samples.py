"""Event XML written the way `EvtRender` writes it (compact, single-quoted attributes)."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

PROVIDERS = {
    "Security": ("Microsoft-Windows-Security-Auditing", "{54849625-5478-4994-a5ba-3e3b0328c30d}"),
    "System": ("Service Control Manager", "{555908d1-a6d7-4695-8e1e-26931d2012f4}"),
    "Microsoft-Windows-Sysmon/Operational": (
        "Microsoft-Windows-Sysmon",
        "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}",
    ),
}


def event_xml(
    channel: str = "Security",
    event_id: int = 4624,
    record_id: int = 1,
    data: dict[str, str] | None = None,
    computer: str = "WS01.corp.example",
) -> str:
    """Return one event as EvtRender(…, EvtRenderEventXml) gives it."""
    provider, guid = PROVIDERS.get(
        channel, ("Application Error", "{00000000-0000-0000-0000-000000000000}")
    )
    items = "".join(
        f"<Data Name={quoteattr(name)}>{escape(value)}</Data>"
        for name, value in (data or {}).items()
    )
    return (
        "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System>"
        f"<Provider Name='{provider}' Guid='{guid}'/><EventID>{event_id}</EventID>"
        "<Version>2</Version><Level>0</Level><Task>12544</Task><Opcode>0</Opcode>"
        "<Keywords>0x8020000000000000</Keywords>"
        "<TimeCreated SystemTime='2024-05-01T10:00:00.1234567Z'/>"
        f"<EventRecordID>{record_id}</EventRecordID>"
        "<Correlation ActivityID='{c96b491c-1545-0001-6049-6bc94515dd01}'/>"
        "<Execution ProcessID='812' ThreadID='4000'/>"
        f"<Channel>{escape(channel)}</Channel><Computer>{computer}</Computer><Security/>"
        f"</System><EventData>{items}</EventData></Event>"
    )


def logon(record_id: int, user: str = "alice") -> str:
    """Return a Security 4624 (an account logged on) for `user`."""
    return event_xml(
        "Security",
        4624,
        record_id,
        {"TargetUserName": user, "TargetDomainName": "CORP", "LogonType": "3",
         "IpAddress": "198.51.100.20", "IpPort": "50412"},
    )  # fmt: skip
