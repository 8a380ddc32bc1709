"""Enrolment: decide whether to trust the server's certificate, enrol with a token, and
store the agent's identity, credential and pinned certificate.

The certificate is trusted only when its SHA-256 fingerprint equals the one given with
`--fingerprint`, or when the operator accepts the fingerprint shown (`--accept-fingerprint`
or a yes at the interactive prompt). Without either the agent refuses and prints the
fingerprint, so nothing is ever trusted silently on first use.
"""

from __future__ import annotations

import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from puffin import __version__
from puffin.agent import state, transport
from puffin.agent.http import Response, TransportError
from puffin.protocol.messages import GATEWAY_PREFIX

if TYPE_CHECKING:
    from puffin.protocol.wire import EnrollResponse

Confirm = Callable[[str], bool]


class UntrustedServer(ValueError):
    """The server's certificate was not confirmed; the message says how to confirm it."""


def normalise(fingerprint: str) -> str:
    """Return a fingerprint without separators, in upper case, for comparison."""
    return fingerprint.replace(":", "").replace(" ", "").strip().upper()


def check_fingerprint(
    fingerprint: str,
    *,
    expected: str | None,
    accept: bool = False,
    confirm: Confirm | None = None,
) -> None:
    """Raise UntrustedServer unless the fingerprint is expected or explicitly accepted."""
    if expected:
        if normalise(expected) != normalise(fingerprint):
            raise UntrustedServer(
                f"the server's certificate is {fingerprint}, not the expected {expected}; "
                "check the address (someone may be in between) and the fingerprint"
            )
        return
    if accept or (confirm is not None and confirm(fingerprint)):
        return
    raise UntrustedServer(
        f"the server's certificate has SHA-256 fingerprint {fingerprint}; compare it with "
        "the one on the console's token page (or `puffin server info` on the server), then "
        f"enrol again with --fingerprint {fingerprint} (or --accept-fingerprint)"
    )


def enroll(
    *,
    server: str,
    token: str,
    name: str,
    state_dir: Path,
    expected_fingerprint: str | None,
    accept_fingerprint: bool = False,
    confirm: Confirm | None = None,
) -> state.Enrolment:
    """Pin the server's certificate, enrol with the token and store the credential."""
    cert_pem = transport.fetch_server_certificate(server)
    fingerprint = transport.describe(cert_pem)
    check_fingerprint(
        fingerprint, expected=expected_fingerprint, accept=accept_fingerprint, confirm=confirm
    )
    enrolled = _enrol(server, cert_pem, token, name)
    enrolment = state.Enrolment(
        server=server,
        agent_id=str(enrolled.agent_id),
        organisation_id=str(enrolled.organisation_id),
        credential=enrolled.credential,
        fingerprint=fingerprint,
        name=name,
        sequence_start=enrolled.sequence_start,
    )
    state.save(state_dir, enrolment, cert_pem)
    return enrolment


def _enrol(server: str, cert_pem: str, token: str, name: str) -> EnrollResponse:
    # pydantic only here: enrolling is a command of its own, and the running agent (which
    # imports this module) stays without it (see puffin.protocol.messages).
    from puffin.protocol.wire import EnrollRequest, EnrollResponse

    request = EnrollRequest(
        token=token,
        name=name,
        hostname=socket.gethostname(),
        os_name=platform.system(),
        os_version=platform.release(),
        agent_version=__version__,
    )
    with transport.client(server, cert_pem) as http:
        try:
            response = http.post(f"{GATEWAY_PREFIX}/enroll", json=request.model_dump())
        except TransportError as error:
            raise ValueError(f"the server did not answer: {error}") from error
    if response.status_code != 201:
        raise ValueError(f"enrolment refused ({response.status_code}): {detail(response)}")
    return EnrollResponse.model_validate(response.json())


def detail(response: Response) -> str:
    """Return the reason a server gave for an error answer."""
    try:
        return str(response.json().get("detail", response.text))
    except (ValueError, AttributeError):
        return response.text[:200]
