"""The audit log in the metadata store: chained appends, signed heads, and what the segments need.

``append(conn, entries)`` runs inside the consumer's transaction, so a record, its chain step and
the id of the event it came from commit together: a crash redelivers the event, and the record id
(unique per tenant) and the consumer's dedupe table make the redelivery harmless — the chain
continues without a gap or a duplicate.

Two writers never interleave one tenant's chain: each append compare-and-sets the chain's size,
and the global position counter is compare-and-set too, so positions commit in order (an
exporter reading "after position p" never skips a record that commits later with a smaller one).
The loser of a race raises ``ConcurrencyConflict`` and its batch is retried.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from services.audit import chain, segments
from services.audit.merkle import Frontier
from services.audit.projector import Entry
from services.audit.signed_heads import SignedHead, TreeHead, signed_head_from_json, signed_head_to_json
from services.audit.tables import audit_chains, audit_counters, audit_heads, audit_records, audit_segments
from services.common.errors import ConcurrencyConflict

POSITION = "position"


@dataclass(frozen=True)
class ChainState:
    tenant_id: str
    size: int
    last_hash: str
    sealed_size: int
    first_unsealed_ms: int


def append(conn: Connection, entries: Sequence[Entry], now_ms: int) -> list[chain.AuditRecord]:
    """Chain ``entries`` onto their tenants' logs; entries whose record id is already there are skipped.

    Raises:
        ConcurrencyConflict: another writer appended to one of these logs first (retry the batch).
        ValueError: an entry cannot be a record (see ``chain.append``).
    """
    try:
        return _append(conn, entries, now_ms)
    except IntegrityError as exc:  # another writer made the chain row, the counter or the record first
        raise ConcurrencyConflict(f"another audit writer appended first ({type(exc.orig).__name__})") from None


def _append(conn: Connection, entries: Sequence[Entry], now_ms: int) -> list[chain.AuditRecord]:
    by_tenant: dict[str, list[Entry]] = {}
    for entry in entries:
        by_tenant.setdefault(entry.tenant_id, []).append(entry)
    appended: list[tuple[chain.AuditRecord, bytes]] = []
    for tenant, group in by_tenant.items():
        appended.extend(_append_tenant(conn, tenant, group, now_ms))
    if appended:
        start = _take_positions(conn, len(appended))
        conn.execute(insert(audit_records), [
            dict(tenant_id=r.tenant_id, seq=r.seq, position=start + i, record_id=r.record_id, time_ms=r.time_ms,
                 kind=r.kind[:64], actor=r.actor[:128], resource=r.resource[:300], record_json=stored.decode())
            for i, (r, stored) in enumerate(appended)])
    return [r for r, _ in appended]


def _append_tenant(conn: Connection, tenant: str, group: list[Entry], now_ms: int
                   ) -> list[tuple[chain.AuditRecord, bytes]]:
    ids = list(dict.fromkeys(e.record_id for e in group))
    present = set(conn.execute(select(audit_records.c.record_id).where(
        audit_records.c.tenant_id == tenant, audit_records.c.record_id.in_(ids))).scalars())
    fresh, seen = [], set(present)
    for entry in group:
        if entry.record_id not in seen:
            seen.add(entry.record_id)
            fresh.append(entry)
    if not fresh:
        return []
    state = chain_state(conn, tenant)
    prev = last_record(conn, tenant, state.size) if state.size else None
    out = []
    for e in fresh:
        prev, stored = chain.append_stored(prev, tenant_id=tenant, record_id=e.record_id, time_ms=e.time_ms,
                                           kind=e.kind, actor=e.actor, resource=e.resource, outcome=e.outcome,
                                           correlation_id=e.correlation_id, attributes=e.attributes)
        out.append((prev, stored))
    values = dict(size=out[-1][0].seq, last_hash=out[-1][0].hash)
    if state.first_unsealed_ms == 0 or state.sealed_size == state.size:
        values["first_unsealed_ms"] = now_ms
    if state.size == 0 and not _chain_exists(conn, tenant):
        conn.execute(insert(audit_chains).values(tenant_id=tenant, sealed_size=0, **{"first_unsealed_ms": now_ms,
                                                                                     **values}))
    else:
        done = conn.execute(update(audit_chains).where(audit_chains.c.tenant_id == tenant,
                                                       audit_chains.c.size == state.size).values(**values))
        if done.rowcount != 1:
            raise ConcurrencyConflict(f"tenant {tenant}'s audit log grew past {state.size} under this append")
    return out


def _chain_exists(conn: Connection, tenant: str) -> bool:
    return conn.execute(select(audit_chains.c.tenant_id).where(audit_chains.c.tenant_id == tenant)).first() is not None


def _take_positions(conn: Connection, n: int) -> int:
    """Reserve ``n`` consecutive global positions; returns the first."""
    current = conn.execute(select(audit_counters.c.value).where(audit_counters.c.name == POSITION)).scalar()
    if current is None:
        conn.execute(insert(audit_counters).values(name=POSITION, value=n))
        return 1
    done = conn.execute(update(audit_counters).where(audit_counters.c.name == POSITION,
                                                     audit_counters.c.value == current).values(value=current + n))
    if done.rowcount != 1:
        raise ConcurrencyConflict("another audit writer took positions first")
    return current + 1


def chain_state(conn: Connection, tenant: str) -> ChainState:
    row = conn.execute(select(audit_chains).where(audit_chains.c.tenant_id == tenant)).first()
    if row is None:
        return ChainState(tenant, 0, chain.GENESIS_HASH, 0, 0)
    return ChainState(tenant, row.size, row.last_hash, row.sealed_size, row.first_unsealed_ms)


def chain_states(conn: Connection) -> list[ChainState]:
    rows = conn.execute(select(audit_chains).order_by(audit_chains.c.tenant_id)).all()
    return [ChainState(r.tenant_id, r.size, r.last_hash, r.sealed_size, r.first_unsealed_ms) for r in rows]


def last_record(conn: Connection, tenant: str, seq: int) -> chain.AuditRecord:
    text = conn.execute(select(audit_records.c.record_json).where(
        audit_records.c.tenant_id == tenant, audit_records.c.seq == seq)).scalar_one()
    return chain.record_from_json(text.encode())


def records_between(conn: Connection, tenant: str, first: int, last: int) -> list[chain.AuditRecord]:
    rows = conn.execute(select(audit_records.c.record_json).where(
        audit_records.c.tenant_id == tenant, audit_records.c.seq >= first, audit_records.c.seq <= last,
    ).order_by(audit_records.c.seq)).scalars()
    return [chain.record_from_json(text.encode()) for text in rows]


def hashes_through(conn: Connection, tenant: str, size: int) -> list[bytes]:
    """The leaf data (each record's 32-byte hash) of records 1..size."""
    rows = conn.execute(select(audit_records.c.record_json).where(
        audit_records.c.tenant_id == tenant, audit_records.c.seq <= size).order_by(audit_records.c.seq)).scalars()
    return [bytes.fromhex(chain.record_from_json(text.encode()).hash) for text in rows]


def records_after_position(conn: Connection, position: int, limit: int) -> list[tuple[int, chain.AuditRecord]]:
    rows = conn.execute(select(audit_records.c.position, audit_records.c.record_json).where(
        audit_records.c.position > position).order_by(audit_records.c.position).limit(limit)).all()
    return [(r.position, chain.record_from_json(r.record_json.encode())) for r in rows]


# ---------------------------------------------------------------- heads


def latest_head(conn: Connection, tenant: str) -> tuple[SignedHead, Frontier] | None:
    row = conn.execute(select(audit_heads).where(audit_heads.c.tenant_id == tenant)
                       .order_by(audit_heads.c.size.desc()).limit(1)).first()
    return None if row is None else (signed_head_from_json(row.signed_json.encode()), _frontier(row.size, row.frontier))


def head_at(conn: Connection, tenant: str, size: int) -> SignedHead | None:
    text = conn.execute(select(audit_heads.c.signed_json).where(
        audit_heads.c.tenant_id == tenant, audit_heads.c.size == size)).scalar()
    return None if text is None else signed_head_from_json(text.encode())


def heads_of(conn: Connection, tenant: str) -> list[SignedHead]:
    rows = conn.execute(select(audit_heads.c.signed_json).where(audit_heads.c.tenant_id == tenant)
                        .order_by(audit_heads.c.size)).scalars()
    return [signed_head_from_json(text.encode()) for text in rows]


def sealed_heads(conn: Connection, tenant: str) -> list[SignedHead]:
    """The heads of segments recorded as sealed (not one signed but not yet sealed): each must be in
    WORM storage, so a verifier that misses one has found a deleted segment."""
    through = conn.execute(select(func.max(audit_segments.c.last_seq)).where(
        audit_segments.c.tenant_id == tenant)).scalar() or 0
    return [h for h in heads_of(conn, tenant) if h.head.size <= through]


def save_head(conn: Connection, signed: SignedHead, frontier: Frontier) -> None:
    conn.execute(insert(audit_heads).values(
        tenant_id=signed.head.tenant_id, size=signed.head.size, signed_json=signed_head_to_json(signed).decode(),
        frontier=",".join(p.hex() for p in frontier.peaks)))


def _frontier(size: int, text: str) -> Frontier:
    return Frontier(size, tuple(bytes.fromhex(p) for p in text.split(",") if p))


def head_for(tenant: str, frontier: Frontier, time_ms: int, key_id: str) -> TreeHead:
    return TreeHead(tenant_id=tenant, size=frontier.size, root_hex=frontier.root().hex(), time_ms=time_ms,
                    key_id=key_id)


# ---------------------------------------------------------------- segments


def stored_between(conn: Connection, tenant: str, first: int, last: int) -> list[tuple[int, str]]:
    """``(seq, stored JSON)`` of records first..last, as the append wrote them (canonical, not re-checked)."""
    return [(r.seq, r.record_json) for r in conn.execute(select(audit_records.c.seq, audit_records.c.record_json).where(
        audit_records.c.tenant_id == tenant, audit_records.c.seq >= first, audit_records.c.seq <= last,
    ).order_by(audit_records.c.seq))]


def leaf_hashes(stored: list[tuple[int, str]]) -> list[bytes]:
    """The leaf data (each record's hash) of stored records."""
    return [bytes.fromhex(json.loads(text)["hash"]) for _, text in stored]


def segment_bytes(conn: Connection, tenant: str, first: int, head: SignedHead) -> bytes:
    """The segment of records ``first..head.size`` closed by ``head``: deterministic, so a re-seal
    after a crash writes the very same bytes (``segments.encode``'s format, from the stored forms)."""
    stored = stored_between(conn, tenant, first, head.head.size)
    if [seq for seq, _ in stored] != list(range(first, head.head.size + 1)):
        raise ValueError(f"tenant {tenant}'s records {first}..{head.head.size} are not all in the store")
    return segments.encode_stored([text.encode() for _, text in stored], head)


def mark_sealed(conn: Connection, tenant: str, name: str, first: int, last: int, data: bytes, now_ms: int,
                next_unsealed_ms: int) -> None:
    """Record that segment ``name`` (records first..last) is in WORM storage; the chain's sealed size
    moves only forward."""
    if conn.execute(select(audit_segments.c.name).where(audit_segments.c.tenant_id == tenant,
                                                        audit_segments.c.name == name)).first() is None:
        conn.execute(insert(audit_segments).values(tenant_id=tenant, name=name, first_seq=first, last_seq=last,
                                                   sha256=hashlib.sha256(data).hexdigest(), sealed_at_ms=now_ms))
    conn.execute(update(audit_chains).where(and_(audit_chains.c.tenant_id == tenant,
                                                 audit_chains.c.sealed_size < last))
                 .values(sealed_size=last, first_unsealed_ms=next_unsealed_ms))


# ---------------------------------------------------------------- counters


def counter(conn: Connection, name: str) -> int:
    return conn.execute(select(audit_counters.c.value).where(audit_counters.c.name == name)).scalar() or 0


def set_counter(conn: Connection, name: str, value: int) -> None:
    done = conn.execute(update(audit_counters).where(audit_counters.c.name == name).values(value=value))
    if done.rowcount == 0:
        conn.execute(insert(audit_counters).values(name=name, value=value))
