"""A local certificate authority for the embedded default and for tests: TLS for every server,
mutual TLS for platform components.

``privtune up`` makes one on first start under ``<data dir>/pki`` (EC P-256 keys, files 0600):
the CA, a server certificate for ``localhost`` and ``127.0.0.1``, and client certificates for
platform components. A component's identity is a URI SAN ``spiffe://privtune/<kind>/<name>``
(kind ``service`` or ``worker``), so a verified client certificate names what is calling
without any header. Enterprises bring their own CA instead: the same files, issued by them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SPIFFE_PREFIX = "spiffe://privtune/"
KINDS = ("service", "worker")
CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class CertPair:
    """A PEM certificate and its PEM private key, as files."""

    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        return self.cert.read_bytes(), self.key.read_bytes()


@dataclass(frozen=True)
class LocalPki:
    """The files of a local PKI folder."""

    root: Path

    @property
    def ca(self) -> CertPair:
        return CertPair(self.root / "ca.pem", self.root / "ca-key.pem")

    @property
    def server(self) -> CertPair:
        return CertPair(self.root / "server.pem", self.root / "server-key.pem")

    def client(self, kind: str, name: str) -> CertPair:
        return CertPair(self.root / f"{kind}-{name}.pem", self.root / f"{kind}-{name}-key.pem")

    def ca_bytes(self) -> bytes:
        return self.ca.cert.read_bytes()


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically (a half-written key is never seen)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


CLOCK_SKEW = dt.timedelta(minutes=5)  # valid from a little before issue, for hosts whose clock is behind


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer_cert: x509.Certificate | None,
           issuer_key: ec.EllipticCurvePrivateKey, days: int, *, ca: bool = False,
           sans: list[x509.GeneralName] | None = None, server: bool = False, client: bool = False,
           now: dt.datetime | None = None, not_after: dt.datetime | None = None) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "privtune"),
                      x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = now or _now()
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer_cert.subject if issuer_cert is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - CLOCK_SKEW).not_valid_after(not_after or now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        builder = builder.add_extension(x509.SubjectAlternativeName(sans or []), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def ensure_local_pki(root: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> LocalPki:
    """The PKI under ``root``, made on first call: a CA and a server certificate for ``hosts``.

    Idempotent: existing files are kept (so certificates handed out stay valid).
    """
    pki = LocalPki(root)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    with creation_lock(root):  # processes starting together make one CA, and sign with it
        _ensure(pki, hosts)
    return pki


@contextlib.contextmanager
def creation_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.lock`` while key files are made (released when the process dies)."""
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ensure(pki: LocalPki, hosts: tuple[str, ...]) -> None:
    if not pki.ca.cert.exists():
        key = _new_key()
        cert = _issue("privtune local CA", key, None, key, CA_DAYS, ca=True)
        write_private(pki.ca.key, _key_pem(key))
        write_private(pki.ca.cert, cert.public_bytes(serialization.Encoding.PEM))
    if not pki.server.cert.exists():
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        _issue_leaf(pki, pki.server, "privtune server", sans, server=True)


def _check_component(kind: str, name: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"component name {name!r}: use letters, digits, '-', '_' or '.'")


def issue_client(pki: LocalPki, kind: str, name: str) -> CertPair:
    """A client certificate naming ``spiffe://privtune/<kind>/<name>`` (made once, then reused)."""
    _check_component(kind, name)
    pair = pki.client(kind, name)
    with creation_lock(pki.root):
        if not pair.cert.exists():
            _issue_leaf(pki, pair, f"{kind}:{name}",
                        [x509.UniformResourceIdentifier(f"{SPIFFE_PREFIX}{kind}/{name}")], client=True)
    return pair


def issue_ephemeral_client(pki: LocalPki, kind: str, name: str, not_after: dt.datetime,
                           now: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key and a client certificate naming ``spiffe://privtune/<kind>/<name>``, valid until
    ``not_after``, written nowhere: ``(certificate PEM, PKCS#8 key PEM)`` for the caller to hand over.

    Raises:
        ValueError: a malformed kind or name, or a CA key that is not an EC key.
        FileNotFoundError: the folder has no CA (it is not the platform's PKI folder).
    """
    _check_component(kind, name)
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"the CA key in {pki.ca.key} is not an EC key; certificates are signed with ECDSA")
    key = _new_key()
    cert = _issue(f"{kind}:{name}", key, ca_cert, ca_key, 0, client=True, now=now, not_after=not_after,
                  sans=[x509.UniformResourceIdentifier(f"{SPIFFE_PREFIX}{kind}/{name}")])
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _issue_leaf(pki: LocalPki, pair: CertPair, subject: str, sans: list[x509.GeneralName], *,
                server: bool = False, client: bool = False) -> None:
    ca_cert = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    ca_key = serialization.load_pem_private_key(pki.ca.key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _new_key()
    cert = _issue(subject, key, ca_cert, ca_key, LEAF_DAYS, sans=sans, server=server, client=client)
    write_private(pair.key, _key_pem(key))
    write_private(pair.cert, cert.public_bytes(serialization.Encoding.PEM))


def spiffe_identity(uri: str) -> tuple[str, str] | None:
    """``spiffe://privtune/service/orchestrator`` -> ("service", "orchestrator"); None for anything else."""
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    kind, _, name = uri[len(SPIFFE_PREFIX):].partition("/")
    if kind not in KINDS or not name or "/" in name:
        return None
    return kind, name
