"""A fake Windows Event Log for the agent's `EventSource`: channels of recorded event XML.

It behaves as the Windows Event Log does for a pull subscription: a bookmark is XML
naming the channel and the record id (`<BookmarkList><Bookmark Channel='…' RecordId='…'
IsCurrent='true'/></BookmarkList>`), a subscription resumes after it, "now" starts after
the newest record, a strict subscription reports records missing after the bookmark on its
first read (as `EvtNext` does with ERROR_EVT_QUERY_RESULT_STALE), and events appended while
subscribed arrive on the next read. Record ids are the fake's own sequence per channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from puffin.agent.windows.eventlog import (
    AccessDenied,
    BookmarkInvalid,
    ChannelMissing,
    Read,
    RecordsMissing,
)

BOOKMARK = re.compile(r"<Bookmark Channel='([^']*)' RecordId='(\d+)' IsCurrent='true'/>")


def bookmark_xml(channel: str, record_id: int) -> str:
    """Return a bookmark as Windows renders it."""
    return (
        f"<BookmarkList>\r\n  <Bookmark Channel='{channel}' RecordId='{record_id}' "
        "IsCurrent='true'/>\r\n</BookmarkList>"
    )


@dataclass
class FakeChannel:
    """Records as (record id, XML), oldest first."""

    records: list[tuple[int, str]] = field(default_factory=list)
    next_id: int = 1


class FakeSubscription:
    """Reads a channel from a position; `None` means after every record there is."""

    def __init__(
        self, log: FakeEventLog, name: str, after: int, *, missing: bool, seeded: bool
    ) -> None:
        self.log, self.name, self.after = log, name, after
        self.missing = missing
        self.moved = seeded
        self.closed = False

    def read(self, limit: int) -> Read:
        assert not self.closed, "read after close"
        if self.log.broken.get(self.name):
            raise self.log.broken[self.name]
        if self.missing:
            self.missing = False
            raise RecordsMissing(f"{self.name}: records after {self.after} are gone")
        pending = [r for r in self.log.channels[self.name].records if r[0] > self.after]
        taken = pending[:limit]
        if taken:
            self.after, self.moved = taken[-1][0], True
        return Read(records=[xml for _, xml in taken])

    def bookmark(self) -> str | None:
        return bookmark_xml(self.name, self.after) if self.moved else None

    def close(self) -> None:
        self.closed = True
        self.log.open.discard(self)


class FakeEventLog:
    """Channels by name; `missing` and `denied` channels refuse to open."""

    def __init__(self, channels: dict[str, list[str]] | None = None) -> None:
        self.channels: dict[str, FakeChannel] = {}
        self.missing: set[str] = set()
        self.denied: set[str] = set()
        self.broken: dict[str, Exception] = {}
        self.open: set[FakeSubscription] = set()
        self.subscribes: list[dict[str, object]] = []
        for name, records in (channels or {}).items():
            self.append(name, *records)

    def append(self, name: str, *records: str) -> None:
        """Write events to a channel (creating it), as a provider would."""
        channel = self.channels.setdefault(name, FakeChannel())
        for xml in records:
            channel.records.append((channel.next_id, xml))
            channel.next_id += 1

    def overwrite_oldest(self, name: str, count: int) -> None:
        """Drop the oldest records, as a full log that wraps (or a cleared one) does."""
        del self.channels[name].records[:count]

    def subscribe(
        self, channel: str, *, query: str, bookmark: str | None, start_at: str, strict: bool
    ) -> FakeSubscription:
        self.subscribes.append(
            {"channel": channel, "query": query, "bookmark": bookmark, "start_at": start_at,
             "strict": strict}
        )  # fmt: skip
        if channel in self.missing or channel not in self.channels:
            raise ChannelMissing(f"{channel}: the specified channel could not be found")
        if channel in self.denied:
            raise AccessDenied(f"{channel}: access is denied")
        records = self.channels[channel].records
        newest = records[-1][0] if records else 0
        if bookmark is not None:
            found = BOOKMARK.search(bookmark)
            if found is None or found.group(1) != channel:
                raise BookmarkInvalid(f"{channel}: the bookmark is not valid for this channel")
            after = int(found.group(2))
            oldest = records[0][0] if records else self.channels[channel].next_id
            gap = oldest > after + 1
            subscription = FakeSubscription(self, channel, after, missing=strict and gap,
                                            seeded=False)  # fmt: skip
        elif start_at == "now" and records:
            subscription = FakeSubscription(self, channel, newest, missing=False, seeded=True)
        else:
            subscription = FakeSubscription(self, channel, 0, missing=False, seeded=False)
        self.open.add(subscription)
        return subscription
