"""Turn one raw text log line into a flat event with named fields (pure: no I/O, stdlib only)."""

from __future__ import annotations

from typing import Any

from puffin.ingest.decoders import (
    accounts,
    auditd,
    cron,
    kernel,
    pam,
    privilege,
    sshd,
    systemd,
    web,
)
from puffin.ingest.decoders.fields import Event, ProgramDecoder
from puffin.ingest.decoders.header import parse_header

__all__ = ["BUILT_IN", "Decoders", "ProgramDecoder"]

BUILT_IN: tuple[ProgramDecoder, ...] = (
    *sshd.DECODERS,
    *privilege.DECODERS,
    *pam.DECODERS,
    *accounts.DECODERS,
    *cron.DECODERS,
    *systemd.DECODERS,
    *kernel.DECODERS,
    *auditd.DECODERS,
    *web.DECODERS,
)
SYSLOG = "syslog"


class Decoders:
    """The registry of program decoders, built once by the app and passed to who needs it.

    One regex reads the syslog header; the program name then picks one small program
    decoder, so a line never runs through every decoder's patterns. Lines without a header
    are tried as audit records, then as web access logs.
    """

    def __init__(self) -> None:
        self._by_program: dict[str, ProgramDecoder] = {}
        self._by_name: dict[str, ProgramDecoder] = {}
        for decoder in BUILT_IN:
            self.register(decoder)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the program decoders, in registration order."""
        return tuple(self._by_name)

    def register(self, decoder: ProgramDecoder) -> None:
        """Add a program decoder; it takes over the program names it lists."""
        self._by_name[decoder.name] = decoder
        for program in decoder.programs:
            self._by_program[program.lower()] = decoder

    def decode(self, line: str, *, year: int | None = None) -> dict[str, Any]:
        """Decode one line; never raises (a decoder bug shows as `decode_error`)."""
        if not isinstance(line, str):
            line = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
        full_log = line.rstrip("\r\n")
        event: Event = {"full_log": full_log, "decoder": ""}
        try:
            self._decode_into(event, full_log.strip(), year)
        except Exception as error:  # a decoder bug must not lose the line; it is shown
            event = {"full_log": full_log, "decoder": "", "decode_error": type(error).__name__}
        return event

    def _decode_into(self, event: Event, text: str, year: int | None) -> None:
        header = parse_header(text, year=year)
        if header is None:
            self._headerless(event, text)
            return
        event.update(header)
        event["decoder"] = SYSLOG
        message = header["message"]
        decoder = self._choose(header.get("program"), header.get("subsystem"), message)
        if decoder is not None and decoder.decode(message, event):
            event["decoder"] = decoder.name

    def _choose(
        self, program: str | None, subsystem: str | None, message: str
    ) -> ProgramDecoder | None:
        if pam.is_pam_message(message, subsystem):
            return self._by_name.get("pam")
        if program is not None:
            found = self._by_program.get(program.rsplit("/", 1)[-1].lower())
            if found is not None:
                return found
        if "msg=audit(" in message:
            return self._by_name.get("auditd")
        if web.looks_like_access_log(message):
            return self._by_name.get("web-accesslog")
        return None

    def _headerless(self, event: Event, text: str) -> None:
        """Bare audit records and access logs carry no syslog header."""
        if text.startswith(("type", "node=")) and auditd.decode_audit(text, event):
            event["decoder"] = "auditd"
        elif web.looks_like_access_log(text) and web.decode_access_log(text, event):
            event["decoder"] = "web-accesslog"
