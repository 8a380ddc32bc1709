"""The Windows Event Log collector: one subscription per channel, resumed from bookmarks.

Each event is sent in the shape EVTX files give (`{"Event": {"System": …, "EventData": …}}`,
see `render`) with a readable `full_log` line and its `TimeCreated` as `timestamp`; the
server flattens it like every other Windows event. The channel's bookmark (the XML that
`EvtRender(…, EvtRenderBookmark)` gives) is saved as the outbox position
`eventlog:<channel>` in the same transaction as the events read before it, so a restart
resumes exactly after the last stored event.

Configuration (`eventlog` section):

- `channels`: names, or `{"name": …, "query": XPath}` objects (default: Security, System,
  Application, Windows PowerShell, Microsoft-Windows-PowerShell/Operational and
  Microsoft-Windows-Sysmon/Operational);
- `start_at`: where a channel without a bookmark starts, `now` (default) or `oldest`;
- `batch_size` (events per outbox transaction), `max_per_turn` (events per channel per
  collect call), `retry_seconds` (wait before reopening a channel that failed).

A channel that is missing (Sysmon not installed), refused (not run as an administrator)
or broken is reported once as an event and tried again later. Records the bookmark points
after that are no longer in the channel (cleared or overwritten before they were read) are
reported as possibly lost, and reading goes on with the next record there is.

The OS calls sit behind `EventSource`; `puffin.agent.windows.evtapi` implements it with
pywin32, and tests drive the collector with a source that replays recorded events.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from puffin.agent.outbox import Outbox
from puffin.agent.windows.render import RenderError, render_event_xml, summary

DEFAULT_CHANNELS = (
    "Security",
    "System",
    "Application",
    "Windows PowerShell",
    "Microsoft-Windows-PowerShell/Operational",
    "Microsoft-Windows-Sysmon/Operational",
)
START_AT = ("now", "oldest")
POSITION_PREFIX = "eventlog:"
MODULE = "windows-eventlog"
MAX_NAME = 256
MAX_QUERY = 8192
MAX_RAW_LOG = 16 * 1024


class EventLogError(Exception):
    """A channel cannot be read now; the message says why."""


class ChannelMissing(EventLogError):
    """The channel does not exist on this machine."""


class AccessDenied(EventLogError):
    """The agent may not read the channel (it must run as an administrator or SYSTEM)."""


class RecordsMissing(EventLogError):
    """Records after the bookmark are gone from the channel (cleared or overwritten)."""


class BookmarkInvalid(EventLogError):
    """The saved bookmark cannot be used (damaged, or written for another channel)."""


@dataclass(frozen=True)
class Read:
    """What one read returned: event XML texts, and events that could not be rendered."""

    records: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class Subscription(Protocol):
    """An open subscription to one channel."""

    def read(self, limit: int) -> Read:
        """Return up to `limit` events that arrived, without waiting."""
        ...

    def bookmark(self) -> str | None:
        """Return the bookmark XML after the last event read (or where the read starts)."""
        ...

    def close(self) -> None:
        """Release the subscription."""
        ...


class EventSource(Protocol):
    """Opens subscriptions; raises the EventLogError subclasses above."""

    def subscribe(
        self, channel: str, *, query: str, bookmark: str | None, start_at: str, strict: bool
    ) -> Subscription:
        """Subscribe after `bookmark`, else from `start_at`; `strict` reports missing records."""
        ...


@dataclass(frozen=True)
class Channel:
    """One channel to read and the XPath query that selects its events."""

    name: str
    query: str = "*"


def _channel(item: Any) -> Channel:
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping):
        raise ValueError("eventlog: each channel must be a name or {'name', 'query'}")
    name, query = item.get("name"), item.get("query", "*")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
        raise ValueError(f"eventlog: channel name {name!r} is not valid")
    if any(ord(ch) < 32 for ch in name):
        raise ValueError(f"eventlog: channel name {name!r} has control characters")
    if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY:
        raise ValueError(f"eventlog: the query of {name} must be a non-empty XPath text")
    return Channel(name.strip(), query)


@dataclass(frozen=True)
class EventLogConfig:
    """Which channels to read and how much per turn."""

    channels: tuple[Channel, ...] = tuple(Channel(name) for name in DEFAULT_CHANNELS)
    start_at: str = "now"
    batch_size: int = 200
    max_per_turn: int = 2000
    retry_seconds: float = 300.0

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> EventLogConfig:
        """Validate the `eventlog` section; raise ValueError with the reason."""
        items = config.get("channels", DEFAULT_CHANNELS)
        if isinstance(items, str) or not isinstance(items, list | tuple) or not items:
            raise ValueError("eventlog: channels must be a non-empty list")
        channels = tuple(_channel(item) for item in items)
        names = [channel.name for channel in channels]
        if len(set(names)) != len(names):
            raise ValueError("eventlog: a channel is listed twice")
        start_at = config.get("start_at", "now")
        if start_at not in START_AT:
            raise ValueError(f"eventlog: start_at must be one of {', '.join(START_AT)}")
        try:
            values = cls(
                channels=channels,
                start_at=start_at,
                batch_size=int(config.get("batch_size", 200)),
                max_per_turn=int(config.get("max_per_turn", 2000)),
                retry_seconds=float(config.get("retry_seconds", 300)),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f"eventlog: {error}") from error
        if not 1 <= values.batch_size <= values.max_per_turn or values.retry_seconds < 1:
            raise ValueError("eventlog: need 1 <= batch_size <= max_per_turn, retry_seconds >= 1")
        return values


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def event_from_xml(xml: str, channel: str) -> dict[str, Any]:
    """Return the event to send for one rendered record (a notice if it cannot be read)."""
    try:
        record = render_event_xml(xml)
    except RenderError as error:
        return {
            **notice("Event not rendered", channel, str(error)),
            "full_log": xml[:MAX_RAW_LOG],
        }
    event = record["Event"]
    created = event["System"].get("TimeCreated")
    stamp = created.get("#attributes", {}).get("SystemTime") if isinstance(created, dict) else None
    return {**record, "full_log": summary(event), "timestamp": stamp or _utc_now()}


def notice(title: str, channel: str, detail: str) -> dict[str, Any]:
    """Return an event about the collector itself (a channel missing, records lost, …)."""
    return {
        "module": MODULE,
        "title": title,
        "channel": channel,
        "full_log": f"windows event log {channel}: {title}: {detail}",
        "timestamp": _utc_now(),
    }


@dataclass
class _State:
    subscription: Subscription | None = None
    retry_at: float = 0.0
    strict: bool = True
    last_problem: str = ""


class EventLogCollector:
    """Reads every configured channel's new events into the outbox on each turn."""

    name = "eventlog"

    def __init__(self, config: EventLogConfig, source: EventSource) -> None:
        self.config = config
        self.source = source
        self._states = {channel.name: _State() for channel in config.channels}

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        state_dir: Path,
        *,
        source_factory: Callable[[], EventSource] | None = None,
    ) -> EventLogCollector:
        """Build from the `eventlog` section with the pywin32 source (Windows only)."""
        parsed = EventLogConfig.from_mapping(config)
        if source_factory is None:
            if sys.platform != "win32":
                raise ValueError("eventlog: the Windows Event Log exists only on Windows")
            from puffin.agent.windows.evtapi import Win32EventSource

            source_factory = Win32EventSource
        return cls(parsed, source_factory())

    def apply_config(self, config: Mapping[str, Any]) -> None:
        """Switch channels without a restart; kept channels keep their subscriptions."""
        new = EventLogConfig.from_mapping(config)
        kept = {channel.name for channel in new.channels} & {c.name for c in self.config.channels}
        old = {channel.name: channel for channel in self.config.channels}
        for channel in new.channels:
            if channel.name in kept and old[channel.name] != channel:
                kept.discard(channel.name)  # its query changed: subscribe again
        for name, state in list(self._states.items()):
            if name not in kept:
                self._release(state)
                del self._states[name]
        for channel in new.channels:
            self._states.setdefault(channel.name, _State())
        self.config = new

    def collect(self, outbox: Outbox, now: float) -> int:
        """Open due channels and write the events each has waiting."""
        written = 0
        for channel in self.config.channels:
            state = self._states[channel.name]
            if state.subscription is None and now >= state.retry_at:
                written += self._open(channel, state, outbox, now)
            if state.subscription is not None:
                written += self._drain(channel, state, outbox, now)
        return written

    def close(self) -> None:
        """Close every subscription."""
        for state in self._states.values():
            self._release(state)

    # opening -------------------------------------------------------------------------

    def _open(self, channel: Channel, state: _State, outbox: Outbox, now: float) -> int:
        key = POSITION_PREFIX + channel.name
        bookmark = outbox.position(key)
        try:
            state.subscription, notices = self._subscribe(channel, bookmark, state.strict)
        except RecordsMissing as error:
            return self._records_missing(channel, state, outbox, str(error))
        except EventLogError as error:
            return self._failed(channel, state, outbox, now, error)
        state.last_problem = ""
        # A channel opened without a (usable) bookmark saves where it starts at once, so
        # a restart before its first event does not skip what happened in between.
        seed = state.subscription.bookmark() if bookmark is None or notices else None
        positions = {key: seed} if seed else None
        return outbox.add(notices, positions) if notices or positions else 0

    def _subscribe(
        self, channel: Channel, bookmark: str | None, strict: bool
    ) -> tuple[Subscription, list[dict[str, Any]]]:
        try:
            subscription = self.source.subscribe(
                channel.name,
                query=channel.query,
                bookmark=bookmark,
                start_at=self.config.start_at,
                strict=strict and bookmark is not None,
            )
        except BookmarkInvalid as error:
            if bookmark is None:
                raise
            title = "Saved bookmark unusable; reading from the oldest record"
            subscription = self.source.subscribe(
                channel.name, query=channel.query, bookmark=None, start_at="oldest", strict=False
            )
            return subscription, [notice(title, channel.name, str(error))]
        return subscription, []

    def _failed(
        self, channel: Channel, state: _State, outbox: Outbox, now: float, error: EventLogError
    ) -> int:
        self._release(state)
        state.retry_at = now + self.config.retry_seconds
        titles = {
            ChannelMissing: "Channel not found",
            AccessDenied: "Channel access denied",
        }
        title = titles.get(type(error), "Channel cannot be read")
        problem = f"{title}: {error}"
        if problem == state.last_problem:
            return 0  # said once; say it again only when it changes
        state.last_problem = problem
        detail = f"{error}; tried again every {self.config.retry_seconds:g} s"
        return outbox.add([notice(title, channel.name, detail)])

    def _records_missing(self, channel: Channel, state: _State, outbox: Outbox, detail: str) -> int:
        self._release(state)
        state.strict = False  # go on from the next record there is
        title = "Records missing after the bookmark; events may have been lost"
        return outbox.add([notice(title, channel.name, detail)])

    # reading -------------------------------------------------------------------------

    def _drain(self, channel: Channel, state: _State, outbox: Outbox, now: float) -> int:
        assert state.subscription is not None
        key = POSITION_PREFIX + channel.name
        written = 0
        while written < self.config.max_per_turn:
            limit = min(self.config.batch_size, self.config.max_per_turn - written)
            try:
                read = state.subscription.read(limit)
            except RecordsMissing as error:
                return written + self._records_missing(channel, state, outbox, str(error))
            except EventLogError as error:
                return written + self._failed(channel, state, outbox, now, error)
            if not read.records and not read.failures:
                return written
            events = [event_from_xml(xml, channel.name) for xml in read.records]
            events += [notice("Event not rendered", channel.name, f) for f in read.failures]
            written += self._store(state, outbox, events, key)
            state.strict = True
            if len(read.records) + len(read.failures) < limit:
                return written
        return written

    def _store(self, state: _State, outbox: Outbox, events: list[dict[str, Any]], key: str) -> int:
        assert state.subscription is not None
        bookmark = state.subscription.bookmark()
        try:
            return outbox.add(events, {key: bookmark} if bookmark else None)
        except BaseException:
            # The subscription has moved past events the outbox did not take: start again
            # from the saved bookmark so they are read once more.
            self._release(state)
            raise

    def _release(self, state: _State) -> None:
        subscription, state.subscription = state.subscription, None
        if subscription is not None:
            subscription.close()
