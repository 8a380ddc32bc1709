"""HTTPS to the server with the enrolment's pinned certificate."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from urllib.parse import urlsplit

from puffin.agent.http import Client
from puffin.agent.state import fingerprint_of_pem

TIMEOUT = 30.0


def fetch_server_certificate(server: str) -> str:
    """Return the certificate the server presents (PEM), without trusting it yet.

    Only used at enrolment, to show and pin the fingerprint; every later call verifies
    against that pin.
    """
    parts = urlsplit(server)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"the server address must look like https://HOST:PORT, not {server!r}")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    address = (parts.hostname, parts.port or 443)
    with (
        socket.create_connection(address, timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=parts.hostname) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ssl.SSLError("the server presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def pinned_context(cert_pem: str) -> ssl.SSLContext:
    """Return a TLS context that trusts exactly the pinned certificate."""
    context = ssl.create_default_context(cadata=cert_pem)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN  # a CA-issued leaf is pinned too
    context.check_hostname = False  # the pin, not the name, identifies the server
    return context


def client(server: str, cert_pem: str, headers: dict[str, str] | None = None) -> Client:
    """Return an HTTP client for the server that accepts only the pinned certificate."""
    return Client(server, pinned_context(cert_pem), headers=headers, timeout=TIMEOUT)


def describe(cert_pem: str) -> str:
    """Return the certificate's fingerprint for display."""
    return fingerprint_of_pem(cert_pem)


def server_addresses(server: str) -> list[str]:
    """Return the IP addresses the server's name resolves to (the literal one for an IP).

    The responder refuses to block these, so a task can never cut the agent off.
    """
    host = urlsplit(server).hostname or ""
    if not host:
        return []
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return [host] if _is_ip(host) else []
    found = {str(info[4][0]).split("%")[0] for info in infos}
    return sorted(found | ({host} if _is_ip(host) else set()))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
