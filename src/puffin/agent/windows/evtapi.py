"""The Event Log source on Windows: pull subscriptions through pywin32's `win32evtlog`.

`EvtSubscribe` with a signal event makes a pull subscription; `EvtNext` (timeout 0) takes
what has arrived; each event is rendered with `EvtRender(…, EvtRenderEventXml)` and moves
the channel's bookmark (`EvtUpdateBookmark`), whose XML (`EvtRenderBookmark`) is the saved
position. Resuming uses `EvtCreateBookmark(xml)` and `EvtSubscribeStartAfterBookmark`,
with `EvtSubscribeStrict` so records that vanished after the bookmark are reported.
Starting "now" bookmarks the channel's newest record first (a reverse `EvtQuery`), so the
position exists before the first new event.

pywin32 is imported when the source is built, never at module import. This module has
not been run on Windows here; see docs/agent.md.
"""

from __future__ import annotations

from typing import Any

from puffin.agent.windows.eventlog import (
    AccessDenied,
    BookmarkInvalid,
    ChannelMissing,
    EventLogError,
    Read,
    RecordsMissing,
)

ERROR_FILE_NOT_FOUND = 2
ERROR_ACCESS_DENIED = 5
ERROR_NOT_FOUND = 1168
ERROR_TIMEOUT = 1460
ERROR_EVT_INVALID_CHANNEL_PATH = 15000
ERROR_EVT_CHANNEL_NOT_FOUND = 15007
ERROR_EVT_QUERY_RESULT_STALE = 15011
QUERY_TIMEOUT_MS = 5000


def translate(code: int, channel: str, detail: str) -> EventLogError:
    """Return the collector's error for a Win32 error code."""
    message = f"{channel}: {detail} (Windows error {code})"
    if code in (ERROR_EVT_CHANNEL_NOT_FOUND, ERROR_EVT_INVALID_CHANNEL_PATH, ERROR_FILE_NOT_FOUND):
        return ChannelMissing(message)
    if code == ERROR_ACCESS_DENIED:
        return AccessDenied(message)
    if code in (ERROR_EVT_QUERY_RESULT_STALE, ERROR_NOT_FOUND):
        return RecordsMissing(message)
    return EventLogError(message)


class Win32Subscription:
    """One pull subscription and the bookmark that follows it."""

    def __init__(
        self,
        api: Any,
        error_type: type[Exception],
        channel: str,
        handles: tuple[Any, Any, Any],
        *,
        seeded: bool,
    ) -> None:
        self._api = api
        self._error = error_type
        self._channel = channel
        # The signal event must live as long as the subscription that sets it.
        self._handle, self._bookmark, self._signal = handles
        self._moved = seeded

    def read(self, limit: int) -> Read:
        """Take up to `limit` waiting events, render them and move the bookmark."""
        api = self._api
        try:
            handles = api.EvtNext(self._handle, limit, 0)
        except self._error as error:
            code = getattr(error, "winerror", 0)
            if code == ERROR_TIMEOUT:
                return Read()
            raise translate(code, self._channel, "EvtNext failed") from error
        read = Read()
        for handle in handles:
            try:
                read.records.append(api.EvtRender(handle, api.EvtRenderEventXml))
            except self._error as error:
                read.failures.append(f"EvtRender failed: {error}")
            api.EvtUpdateBookmark(self._bookmark, handle)
            self._moved = True
        return read

    def bookmark(self) -> str | None:
        """Return the bookmark's XML, or None before any event was read."""
        if not self._moved:
            return None
        return str(self._api.EvtRender(self._bookmark, self._api.EvtRenderBookmark))

    def close(self) -> None:
        """Close the subscription handle (event handles close when collected)."""
        close = getattr(self._handle, "Close", None)
        if close is not None:
            close()


class Win32EventSource:
    """Subscribes to channels of the local machine."""

    def __init__(self) -> None:
        try:
            import pywintypes
            import win32event
            import win32evtlog
        except ImportError as error:
            raise OSError(
                "reading the Windows Event Log needs pywin32 (pip install 'puffin-mdr[agent]')"
            ) from error
        self._api: Any = win32evtlog
        self._events: Any = win32event
        self._error: type[Exception] = pywintypes.error

    def subscribe(
        self, channel: str, *, query: str, bookmark: str | None, start_at: str, strict: bool
    ) -> Win32Subscription:
        """Subscribe after the bookmark, or from the newest or oldest record."""
        api = self._api
        try:
            after, seeded = self._start(channel, query, bookmark, start_at)
            if after is None:
                flags = api.EvtSubscribeStartAtOldestRecord
                following = api.EvtCreateBookmark(None)
            else:
                flags = api.EvtSubscribeStartAfterBookmark
                flags |= api.EvtSubscribeStrict if strict else 0
                following = after
            signal = self._events.CreateEvent(None, False, False, None)
            handle = api.EvtSubscribe(
                channel, flags, SignalEvent=signal, Query=query, Bookmark=after
            )
        except self._error as error:
            code = getattr(error, "winerror", 0)
            raise translate(code, channel, "EvtSubscribe failed") from error
        return Win32Subscription(
            api, self._error, channel, (handle, following, signal), seeded=seeded
        )

    def _start(
        self, channel: str, query: str, bookmark: str | None, start_at: str
    ) -> tuple[Any, bool]:
        """Return the bookmark handle to start after (None: oldest) and whether it is new."""
        if bookmark is not None:
            try:
                return self._api.EvtCreateBookmark(bookmark), False
            except self._error as error:
                code = getattr(error, "winerror", 0)
                raise BookmarkInvalid(f"{channel}: {error} (Windows error {code})") from error
        if start_at == "now":
            newest = self._newest(channel, query)
            if newest is not None:
                return newest, True
        return None, False

    def _newest(self, channel: str, query: str) -> Any:
        """Return a bookmark on the channel's newest matching record, or None if it is empty."""
        api = self._api
        flags = api.EvtQueryChannelPath | api.EvtQueryReverseDirection
        result = api.EvtQuery(channel, flags, query)
        handles = api.EvtNext(result, 1, QUERY_TIMEOUT_MS)
        if not handles:
            return None
        bookmark = api.EvtCreateBookmark(None)
        api.EvtUpdateBookmark(bookmark, handles[0])
        return bookmark
