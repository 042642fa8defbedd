"""Signed tree heads: the audit service's Ed25519 signature over a log's Merkle root.

A head says "tenant T's log had ``size`` records and its RFC 6962 root was
``root_hex`` at ``time_ms``", signed by the key ``key_id``. The chain makes a
single edit visible; a head makes a *consistent* rewrite visible too, because
whoever rewrites history cannot sign a matching head without the private key.
Keys are named by ``key_id`` (first 16 hex digits of sha256 of the raw public
key), so a verifier holds every published key, old ones included, in a dict.

No file I/O here: keys go in and out as PEM bytes, heads as canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HEAD_CONTEXT = b"privtune.audit.tree-head.v1\n"
KEY_ID_HEX = 16
SIGNATURE_BYTES = 64
MAX_HEAD_JSON_BYTES = 4096
DEFAULT_EVERY_RECORDS = 1000
DEFAULT_EVERY_MS = 60_000

_HEX_DIGITS = frozenset("0123456789abcdef")
_HEAD_FIELDS = ("tenant_id", "size", "root_hex", "time_ms", "key_id")


@dataclass(frozen=True)
class TreeHead:
    """What a head asserts about one tenant's log.

    Attributes:
        tenant_id: whose log.
        size: how many records (seq 1..size) the tree covers.
        root_hex: the RFC 6962 root over those records' hashes (each record's
            32-byte hash is one leaf's data), hex.
        time_ms: when the head was signed, Unix milliseconds; non-decreasing per log.
        key_id: which key signed it (``key_id(public_key)``).
    """

    tenant_id: str
    size: int
    root_hex: str
    time_ms: int
    key_id: str


@dataclass(frozen=True)
class SignedHead:
    """A tree head and the Ed25519 signature over ``head_bytes(head)``, hex."""

    head: TreeHead
    signature_hex: str


def head_bytes(head: TreeHead) -> bytes:
    """The signed message: a context line, then the head as canonical JSON.

    The context line keeps a head signature from being valid for any other
    message the same key might sign.
    """
    fields = {name: getattr(head, name) for name in _HEAD_FIELDS}
    return HEAD_CONTEXT + json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", errors="surrogatepass"
    )


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 over the 32 raw bytes of ``public_key``."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX]


def new_private_key() -> Ed25519PrivateKey:
    """A fresh signing key."""
    return Ed25519PrivateKey.generate()


def sign_head(private_key: Ed25519PrivateKey, head: TreeHead) -> SignedHead:
    """Sign ``head``.

    Raises:
        ValueError: ``head.key_id`` is not this key's id, or a field is malformed.
    """
    own_id = key_id(private_key.public_key())
    if head.key_id != own_id:
        raise ValueError(f"head names key {head.key_id!r} but is being signed with key {own_id!r}")
    _check_head(head)
    return SignedHead(head=head, signature_hex=private_key.sign(head_bytes(head)).hex())


def verify_head(public_keys: Mapping[str, Ed25519PublicKey], signed: SignedHead) -> bool:
    """Whether ``signed`` carries a valid signature by the key it names, among ``public_keys``.

    An unknown key, a malformed signature or a malformed head is ``False``, never an exception.
    """
    public_key = public_keys.get(signed.head.key_id)
    if public_key is None:
        return False
    try:
        _check_head(signed.head)
        signature = bytes.fromhex(signed.signature_hex)
    except (ValueError, TypeError):
        return False
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        public_key.verify(signature, head_bytes(signed.head))
    except InvalidSignature:
        return False
    return True


def due(
    records_since_last_head: int,
    ms_since_last_head: int,
    every_records: int = DEFAULT_EVERY_RECORDS,
    every_ms: int = DEFAULT_EVERY_MS,
) -> bool:
    """Whether a new head should be signed now: after ``every_records`` records or ``every_ms``.

    A head by time is only due when records arrived since the last head: a head
    that repeats the last size proves nothing new.
    """
    if every_records < 1 or every_ms < 1:
        raise ValueError(f"head intervals must be positive, got every_records={every_records}, every_ms={every_ms}")
    if records_since_last_head <= 0:
        return False
    return records_since_last_head >= every_records or ms_since_last_head >= every_ms


def private_key_to_pem(private_key: Ed25519PrivateKey, password: bytes | None = None) -> bytes:
    """PKCS#8 PEM of ``private_key``, encrypted when ``password`` is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def private_key_from_pem(pem: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Load a private key saved by ``private_key_to_pem``.

    Raises:
        ValueError: not a PEM private key, the wrong password, or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"audit signing key does not load as a PEM private key: {exc.__class__.__name__}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"audit signing key must be Ed25519, got {type(key).__name__}")
    return key


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM of ``public_key``: what the service publishes."""
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """Load a published public key.

    Raises:
        ValueError: not a PEM public key, or not an Ed25519 key.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"audit public key does not load as a PEM public key: {exc.__class__.__name__}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"audit public key must be Ed25519, got {type(key).__name__}")
    return key


def public_keys_from_pem(pems: Iterable[bytes]) -> dict[str, Ed25519PublicKey]:
    """The ``{key_id: key}`` map ``verify_head`` takes, from published PEM keys (current and retired)."""
    keys = [public_key_from_pem(pem) for pem in pems]
    return {key_id(key): key for key in keys}


def signed_head_to_json(signed: SignedHead) -> bytes:
    """The published form of a signed head, canonical JSON."""
    obj = {name: getattr(signed.head, name) for name in _HEAD_FIELDS}
    obj["signature_hex"] = signed.signature_hex
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_head_from_json(data: bytes) -> SignedHead:
    """Parse a published head (its shape only: ``verify_head`` checks the signature).

    Raises:
        ValueError: ``data`` is too large, not JSON, not a signed head, or not
            the exact bytes ``signed_head_to_json`` writes.
    """
    if len(data) > MAX_HEAD_JSON_BYTES:
        raise ValueError(f"a signed head is at most {MAX_HEAD_JSON_BYTES} bytes, got {len(data)}")
    try:
        obj: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"signed head is not JSON: {exc.__class__.__name__}") from None
    expected = {*_HEAD_FIELDS, "signature_hex"}
    if not isinstance(obj, dict) or set(obj) != expected:
        raise ValueError(f"signed head must be a JSON object with fields {sorted(expected)}")
    head = TreeHead(**{name: obj[name] for name in _HEAD_FIELDS})
    _check_head(head)
    if not _is_hex(obj["signature_hex"], 2 * SIGNATURE_BYTES):
        raise ValueError(f"signed head signature_hex must be {2 * SIGNATURE_BYTES} lowercase hex digits")
    signed = SignedHead(head=head, signature_hex=obj["signature_hex"])
    if signed_head_to_json(signed) != data:
        raise ValueError("signed head is not in canonical form (key order, spacing, escapes or a repeated key)")
    return signed


def _check_head(head: TreeHead) -> None:
    if not isinstance(head.tenant_id, str) or not head.tenant_id:
        raise ValueError("tree head tenant_id must be a non-empty string")
    for name in ("size", "time_ms"):
        value = getattr(head, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"tree head {name} must be a non-negative integer, got {value!r:.40}")
    if not _is_hex(head.root_hex, 64):
        raise ValueError("tree head root_hex must be 64 lowercase hex digits")
    if not _is_hex(head.key_id, KEY_ID_HEX):
        raise ValueError(f"tree head key_id must be {KEY_ID_HEX} lowercase hex digits")


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and set(value) <= _HEX_DIGITS
