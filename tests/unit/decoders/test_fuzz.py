"""Whatever arrives on a syslog port, decoding never raises and always keeps the line."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from puffin.ingest.decoders import Decoders

DECODERS = Decoders()

# Real-looking beginnings, so that random tails reach deep into every program decoder.
HEADERS = st.sampled_from(
    [
        "",
        "Feb  9 11:44:56 host sshd[1]: ",
        "<38>Feb 30 11:44:56 host sudo: ",
        "2024-02-09T11:44:56+01:00 host su: ",
        '<13>1 2024-02-09T11:44:56Z host app 1 - [a@1 b="',
        "Feb  9 11:44:56 host kernel: [ 1.0] ",
        "Feb  9 11:44:56 host CRON[1]: (",
        "Feb  9 11:44:56 host systemd[1]: ",
        "Feb  9 11:44:56 host useradd[1]: ",
        "Feb  9 11:44:56 host su(pam_unix)[1]: ",
        'Feb  9 11:44:56 host nginx: 1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "',
        "type=EXECVE msg=audit(1.1:1): ",
        "node=x type=SYSCALL msg=audit(99999999999999999999.1:1): ",
    ]
)
WORDS = st.sampled_from(
    [
        "",
        "Accepted ",
        "Failed password for invalid user ",
        "Invalid user ",
        "Connection closed by ",
        "PAM ",
        "pam_unix(x:y): ",
        "new user: ",
        "change user '",
        "Started ",
        "SRC=",
        "usb 1-1: ",
        "audit(",
        "a0=",
        "proctitle=",
        "msg='",
        " ; COMMAND=",
        "(to ",
        '] "',
        " port ",
        " from ",
    ]
)
TAILS = st.text(max_size=120)


@settings(max_examples=1500, deadline=None)
@given(line=st.text(max_size=300))
def test_any_text_decodes_without_raising(line: str) -> None:
    event = DECODERS.decode(line)
    assert event["full_log"] == line.rstrip("\r\n")
    assert isinstance(event["decoder"], str)
    assert "decode_error" not in event


@settings(max_examples=3000, deadline=None)
@given(header=HEADERS, parts=st.lists(st.tuples(WORDS, TAILS), max_size=4))
def test_log_shaped_text_decodes_without_raising(header: str, parts: list[tuple[str, str]]) -> None:
    line = header + "".join(word + tail for word, tail in parts)
    event = DECODERS.decode(line, year=2024)
    assert event["full_log"] == line.rstrip("\r\n")
    assert "decode_error" not in event, line
