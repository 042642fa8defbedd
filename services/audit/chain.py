"""Audit records and the hash chain that links each one to its predecessor.

Every tenant has its own log. Record ``seq`` (1-based) commits to record
``seq - 1`` through ``prev_hash``, and its own ``hash`` is the sha256 of its
canonical bytes, which include ``prev_hash``: changing any record changes its
hash, which no longer matches the next record's ``prev_hash``. The chain alone
does not stop a writer who rewrites a record *and every later one*; the signed
Merkle tree heads (``signed_heads``) do.

Canonical bytes are JSON with sorted keys, no whitespace, UTF-8, strings and
integers only (integers below 2**53): the RFC 8785 (JCS) form, so a verifier in
another language can recompute a hash with any JCS library. The ``"v"`` member
names the format; a later format adds a version, never changes this one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

FORMAT_VERSION = 1
GENESIS_HASH = "0" * 64
MAX_RECORD_BYTES = 16 * 1024
MAX_ATTRIBUTES = 256
MAX_SAFE_INT = 2**53 - 1

_TEXT_FIELDS = ("tenant_id", "record_id", "kind", "actor", "resource", "outcome", "correlation_id")
_REQUIRED_TEXT = ("tenant_id", "record_id", "kind")
_HEX_DIGITS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class AuditRecord:
    """One entry of a tenant's audit log. Ids, hashes and counts only, never data.

    Attributes:
        tenant_id: the tenant whose log holds the record (the verified tenant of a caller).
        seq: position in the tenant's log, 1 for the first record.
        record_id: stable id, e.g. the id of the source event; exports dedupe on it.
        time_ms: when the audited action happened, Unix milliseconds.
        kind: what happened, e.g. ``rpc.denied``, ``dataset.mounted``.
        actor: the verified principal, or ``system``.
        resource: what was acted on, e.g. ``training_job/<id>``.
        outcome: ``allowed``, ``denied``, ``succeeded``, ``failed``...
        correlation_id: ties the record to a request or job flow.
        attributes: extra ``(key, value)`` pairs sorted by key: ids, hashes, counts.
        prev_hash: hash of record ``seq - 1``; ``GENESIS_HASH`` for seq 1.
        hash: sha256 hex of ``canonical_bytes(self)``.
    """

    tenant_id: str
    seq: int
    record_id: str
    time_ms: int
    kind: str
    actor: str
    resource: str
    outcome: str
    correlation_id: str
    attributes: tuple[tuple[str, str], ...]
    prev_hash: str
    hash: str


def canonical_bytes(record: AuditRecord) -> bytes:
    """The bytes a record's hash covers: every field but ``hash``, in canonical JSON."""
    return _canonical_json(_content(record))


def record_hash(record: AuditRecord) -> str:
    """The hash ``record`` should carry, recomputed from its content."""
    return hashlib.sha256(canonical_bytes(record)).hexdigest()


def append(
    prev: AuditRecord | None,
    *,
    tenant_id: str,
    record_id: str,
    time_ms: int,
    kind: str,
    actor: str,
    resource: str,
    outcome: str,
    correlation_id: str = "",
    attributes: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> AuditRecord:
    """The record that follows ``prev`` (``None`` starts a tenant's log).

    Attributes are sorted by key, so the same facts always hash the same.

    Raises:
        ValueError: a field has the wrong type or is empty where it may not be,
            an attribute key repeats, ``prev`` belongs to another tenant, or the
            record has more than ``MAX_ATTRIBUTES`` attributes or its canonical
            form exceeds ``MAX_RECORD_BYTES``.
    """
    return _chain(prev, tenant_id=tenant_id, record_id=record_id, time_ms=time_ms, kind=kind, actor=actor,
                  resource=resource, outcome=outcome, correlation_id=correlation_id, attributes=attributes)[0]


def _chain(
    prev: AuditRecord | None,
    *,
    tenant_id: str,
    record_id: str,
    time_ms: int,
    kind: str,
    actor: str,
    resource: str,
    outcome: str,
    correlation_id: str = "",
    attributes: Mapping[str, str] | Iterable[tuple[str, str]] = (),
) -> tuple[AuditRecord, bytes]:
    """``append``, and the canonical bytes its hash covers."""
    if prev is not None and prev.tenant_id != tenant_id:
        raise ValueError(
            f"cannot append a record for tenant {tenant_id!r} to tenant {prev.tenant_id!r}'s log"
        )
    texts = (tenant_id, record_id, kind, actor, resource, outcome, correlation_id)
    if not (tenant_id and record_id and kind and all(type(t) is str and t.isascii() for t in texts)):
        for name, value in zip(("tenant_id", "record_id", "kind", "actor", "resource", "outcome",
                                "correlation_id"), texts):  # the slow path names what is wrong
            _check_text(name, value, required=name in _REQUIRED_TEXT)
    _check_int("time_ms", time_ms)
    pairs = _sorted_attributes(attributes)
    seq = 1 if prev is None else prev.seq + 1
    prev_hash = GENESIS_HASH if prev is None else prev.hash
    draft = AuditRecord(
        tenant_id=tenant_id,
        seq=seq,
        record_id=record_id,
        time_ms=time_ms,
        kind=kind,
        actor=actor,
        resource=resource,
        outcome=outcome,
        correlation_id=correlation_id,
        attributes=pairs,
        prev_hash=prev_hash,
        hash="",
    )
    return _sealed(draft)


def append_stored(prev: AuditRecord | None, **fields: Any) -> tuple[AuditRecord, bytes]:
    """``append``, and the record's stored form (``record_to_json``) from the same encoding."""
    record, body = _chain(prev, **fields)
    return record, _splice_hash(body, record.hash)


def _sealed(draft: AuditRecord) -> tuple[AuditRecord, bytes]:
    body = canonical_bytes(draft)
    if len(body) > MAX_RECORD_BYTES:
        raise ValueError(
            f"audit record {draft.record_id[:64]!r} for tenant {draft.tenant_id!r} is {len(body)} bytes in "
            f"canonical form, over the {MAX_RECORD_BYTES}-byte limit: keep attributes to ids, hashes and counts"
        )
    return AuditRecord(draft.tenant_id, draft.seq, draft.record_id, draft.time_ms, draft.kind, draft.actor,
                       draft.resource, draft.outcome, draft.correlation_id, draft.attributes, draft.prev_hash,
                       hashlib.sha256(body).hexdigest()), body


def record_to_json(record: AuditRecord) -> bytes:
    """The stored form of a record: its canonical content plus ``hash``.

    Built from ``canonical_bytes`` by inserting the ``hash`` member where key order puts it (just
    before ``"kind"``): one JSON encoding per record instead of two. The splice point is unique,
    because inside a JSON string every ``"`` is escaped, so ``,"kind":`` only occurs as a member.
    """
    return _splice_hash(canonical_bytes(record), record.hash) if _is_hash(record.hash) else \
        _canonical_json({**_content(record), "hash": record.hash})


def _is_hash(value: str) -> bool:
    return len(value) == 64 and _HEX_DIGITS.issuperset(value)


def _splice_hash(body: bytes, hash_hex: str) -> bytes:
    at = body.find(b',"kind":')
    return body[:at] + b',"hash":"' + hash_hex.encode() + b'"' + body[at:]


def record_from_json(data: bytes) -> AuditRecord:
    """Parse a stored record, checking its shape (not its hash: that is ``verify``'s job).

    Only the exact bytes ``record_to_json`` writes are accepted, so no other
    JSON reader (a SIEM, a person with ``jq``) can see a different record in
    them, e.g. through a repeated key.

    Raises:
        ValueError: ``data`` is too large, not JSON, not a version-1 record, or
            not in canonical form.
    """
    if len(data) > 2 * MAX_RECORD_BYTES:
        raise ValueError(f"a stored audit record is at most {2 * MAX_RECORD_BYTES} bytes, got {len(data)}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"stored audit record is not JSON: {exc.__class__.__name__}") from None
    if not isinstance(obj, dict):
        raise ValueError("stored audit record is not a JSON object")
    expected = set(_TEXT_FIELDS) | {"v", "seq", "time_ms", "attributes", "prev_hash", "hash"}
    if set(obj) != expected:
        raise ValueError(f"stored audit record has fields {sorted(obj)[:16]}, expected {sorted(expected)}")
    if obj["v"] != FORMAT_VERSION or isinstance(obj["v"], bool):
        raise ValueError(f"stored audit record has format version {obj['v']!r}; this reader knows {FORMAT_VERSION}")
    record = _record_from_fields(obj)
    if record_to_json(record) != data:
        raise ValueError(
            "stored audit record is not in canonical form (key order, spacing, escapes or a repeated key): "
            "two readers could see different records in it"
        )
    return record


def _record_from_fields(obj: dict[str, Any]) -> AuditRecord:
    for name in _TEXT_FIELDS:
        _check_text(name, obj[name], required=False)
    for name in ("seq", "time_ms"):
        _check_int(name, obj[name])
    for name in ("prev_hash", "hash"):
        _check_hex(name, obj[name])
    attributes = obj["attributes"]
    if not isinstance(attributes, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in attributes
    ):
        raise ValueError("stored audit record attributes must be a list of [key, value] string pairs")
    return AuditRecord(
        tenant_id=obj["tenant_id"],
        seq=obj["seq"],
        record_id=obj["record_id"],
        time_ms=obj["time_ms"],
        kind=obj["kind"],
        actor=obj["actor"],
        resource=obj["resource"],
        outcome=obj["outcome"],
        correlation_id=obj["correlation_id"],
        attributes=tuple((k, v) for k, v in attributes),
        prev_hash=obj["prev_hash"],
        hash=obj["hash"],
    )


def _content(record: AuditRecord) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "tenant_id": record.tenant_id,
        "seq": record.seq,
        "record_id": record.record_id,
        "time_ms": record.time_ms,
        "kind": record.kind,
        "actor": record.actor,
        "resource": record.resource,
        "outcome": record.outcome,
        "correlation_id": record.correlation_id,
        "attributes": [[k, v] for k, v in record.attributes],
        "prev_hash": record.prev_hash,
    }


def _canonical_json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8", errors="surrogatepass"
    )


def _sorted_attributes(attributes: Mapping[str, str] | Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    if isinstance(attributes, Mapping) and len(attributes) <= MAX_ATTRIBUTES:  # the common case, checked at once
        pairs = attributes.items()
        if all(type(k) is str and k and type(v) is str and k.isascii() and v.isascii() for k, v in pairs):
            return tuple(sorted(pairs))
    raw = list(attributes.items()) if isinstance(attributes, Mapping) else list(attributes)
    if len(raw) > MAX_ATTRIBUTES:
        raise ValueError(f"an audit record has at most {MAX_ATTRIBUTES} attributes, got {len(raw)}")
    items: list[tuple[str, str]] = []
    for item in raw:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"audit attributes must be (key, value) pairs, got {type(item).__name__}")
        key, value = item
        items.append((key, value))
        if not (type(key) is str and key and type(value) is str and key.isascii() and value.isascii()):
            _check_text("attribute key", key, required=True)  # the slow path names what is wrong
            _check_text(f"attribute {key[:64]!r}", value, required=False)
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"audit attribute keys must be unique; repeated: {repeated[:8]}")
    return tuple(sorted(items))


def _check_text(name: str, value: object, *, required: bool) -> None:
    if not isinstance(value, str):
        raise ValueError(f"audit record {name} must be a string, got {type(value).__name__}")
    if required and not value:
        raise ValueError(f"audit record {name} must not be empty")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"audit record {name} is not valid Unicode text (lone surrogate)") from None


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
        raise ValueError(f"audit record {name} must be an integer in 0..2**53-1, got {value!r:.40}")


def _check_hex(name: str, value: object) -> None:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX_DIGITS:
        raise ValueError(f"audit record {name} must be 64 lowercase hex digits")
