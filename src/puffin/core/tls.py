"""Server certificates: a self-signed one generated on first start, and fingerprints."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from puffin.core.crypto import write_private_file


@dataclass(frozen=True)
class CertificatePaths:
    """Where the server's certificate and key are."""

    cert_file: Path
    key_file: Path


def fingerprint_sha256(cert_pem: bytes) -> str:
    """Return the certificate's SHA-256 fingerprint as colon-separated upper-case hex."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_of_file(cert_file: Path) -> str:
    """Return the SHA-256 fingerprint of the first certificate in a PEM file."""
    return fingerprint_sha256(cert_file.read_bytes())


def _subject_alt_names(hostnames: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(names)


def generate_self_signed(
    cert_file: Path, key_file: Path, hostnames: list[str] | None = None, days: int = 825
) -> CertificatePaths:
    """Create an ECDSA P-256 key and a self-signed certificate for the given names."""
    names = hostnames or sorted({"localhost", "127.0.0.1", "::1", socket.gethostname()})
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(_subject_alt_names(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_file(key_file, key_pem)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CertificatePaths(cert_file=cert_file, key_file=key_file)


def ensure_certificate(
    data_dir: Path, cert_file: Path | None, key_file: Path | None
) -> CertificatePaths:
    """Return the operator's certificate, or the generated one, creating it on first use."""
    if cert_file is not None and key_file is not None:
        return CertificatePaths(cert_file=cert_file, key_file=key_file)
    tls_dir = data_dir / "tls"
    paths = CertificatePaths(cert_file=tls_dir / "server.crt", key_file=tls_dir / "server.key")
    if not (paths.cert_file.exists() and paths.key_file.exists()):
        tls_dir.mkdir(parents=True, exist_ok=True)
        generate_self_signed(paths.cert_file, paths.key_file)
    return paths
