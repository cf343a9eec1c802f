"""The lab's own certificate authority and the portal's certificate (docs/lab.md).

``parvis-lab up`` makes, in the state directory, a short-lived CA and a
certificate for the portal's name (``portail.lab.test``, plus the gateway's
LAN addresses), and makes every client trust the CA:

* OpenSSL, curl and Python read ``/etc/ssl/certs/ca-certificates.crt``; ``ip
  netns exec`` bind-mounts ``/etc/netns/<ns>/ssl`` over ``/etc/ssl``, so
  :func:`write_client_trust` builds a complete replacement directory there
  (the system bundle plus the lab CA, and ``openssl.cnf``).
* Chromium reads an NSS database: :func:`nss_import_command` gives the
  ``certutil`` line that adds the CA to one in a browser's profile.

Nothing here touches the host's own trust store.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SYSTEM_SSL_DIR = Path("/etc/ssl")
SYSTEM_BUNDLE = SYSTEM_SSL_DIR / "certs" / "ca-certificates.crt"
CA_VALIDITY = datetime.timedelta(days=30)
NSS_NICKNAME = "parvis-lab"


@dataclass(frozen=True)
class LabTLS:
    """Where the lab's TLS files are (all in the state directory)."""

    ca_cert: Path
    ca_key: Path
    cert: Path
    key: Path


def paths(state_dir: Path) -> LabTLS:
    """The TLS file names inside a lab's state directory (whether or not they exist yet)."""
    return LabTLS(ca_cert=state_dir / "ca.crt", ca_key=state_dir / "ca.key",
                  cert=state_dir / "portal.crt", key=state_dir / "portal.key")


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file created with mode 0600 (never readable by others, even briefly)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_pki(state_dir: Path, lab_name: str, hostname: str,
             addresses: tuple[str, ...]) -> LabTLS:
    """Create a fresh CA and a server certificate for ``hostname`` and ``addresses``.

    EC P-256 keys; the CA (``CA:TRUE, pathlen:0``) and the certificate are valid
    for 30 days from an hour ago (clock skew). Keys are written 0600.
    """
    files = paths(state_dir)
    now = datetime.datetime.now(datetime.UTC)
    not_before = now - datetime.timedelta(hours=1)
    not_after = now + CA_VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Parvis lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, f"Parvis lab CA ({lab_name})"),
    ])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    _write_private(files.ca_key, _key_pem(ca_key))
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(files.key, _key_pem(key))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return files


def write_client_trust(netns_dir: Path, ca_cert: Path) -> None:
    """Make ``<netns_dir>/ssl`` a replacement for /etc/ssl that also trusts the lab CA.

    ``ip netns exec`` bind-mounts it over /etc/ssl, hiding the host's, so it
    carries the system bundle plus the lab CA in ``certs/ca-certificates.crt``
    (what OpenSSL, curl and Python read on Debian) and a copy of ``openssl.cnf``.
    """
    ssl_dir = netns_dir / "ssl"
    certs = ssl_dir / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.exists() else b""
    if system and not system.endswith(b"\n"):
        system += b"\n"
    (certs / "ca-certificates.crt").write_bytes(system + ca_cert.read_bytes())
    shutil.copyfile(ca_cert, certs / "parvis-lab-ca.pem")
    cnf = SYSTEM_SSL_DIR / "openssl.cnf"
    if cnf.exists():
        shutil.copyfile(cnf, ssl_dir / "openssl.cnf")


def nss_import_command(nss_dir: Path, ca_cert: Path) -> list[str]:
    """The ``certutil`` command that makes an NSS database (Chromium's) trust the lab CA.

    ``nss_dir`` is ``<user-data-dir>/.pki/nssdb`` for a Chromium whose HOME is
    the profile directory; the database is created if absent (``sql:`` format).
    """
    return ["certutil", "-d", f"sql:{nss_dir}", "-A", "-t", "C,,", "-n", NSS_NICKNAME,
            "-i", str(ca_cert)]


def nss_init_command(nss_dir: Path) -> list[str]:
    """The ``certutil`` command that creates an empty NSS database without a password."""
    return ["certutil", "-d", f"sql:{nss_dir}", "-N", "--empty-password"]
