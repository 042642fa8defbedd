"""Verify a tenant's audit log against its signed tree heads, and name the first problem.

Two layers of evidence are checked:

* the hash chain: each record's stored hash is recomputed from its content, each
  record must link to the one before it, and seqs must run 1, 2, 3... in storage
  order. This catches an edit, a deletion, a reordering or an insertion, and
  locates it, as long as the writer did not rewrite everything after it;
* the signed heads: each head's Ed25519 signature must verify with a published
  key, and its root must equal the RFC 6962 root over the hashes of records
  ``1..size``. This catches what the chain cannot: a consistent rewrite
  (``head_mismatch``) and a cut-off tail (``truncated``). Two heads that both
  match the same records are consistent by construction, so with the records at
  hand no consistency proof is needed; ``verify_heads_consistent`` is for a
  monitor that keeps only heads.

Records after the last verified head are protected by the chain only: a writer
can drop or rewrite that tail unseen. ``VerifyReport.signed_through`` says where
signed evidence ends.

Problems are ranked by the first seq they concern (a record problem before a
head problem at the same seq), so the report names the earliest place where the
log stops being trustworthy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit.chain import GENESIS_HASH, AuditRecord, record_hash
from services.audit.merkle import Frontier, frontier_of, verify_consistency, verify_inclusion
from services.audit.signed_heads import SignedHead, TreeHead, verify_head

PublicKeys = Mapping[str, Ed25519PublicKey]


class ProblemKind(StrEnum):
    """What was done to the log."""

    EDITED = "edited"
    DELETED = "deleted"
    REORDERED = "reordered"
    INSERTED = "inserted"
    TRUNCATED = "truncated"
    FORGED_HEAD = "forged_head"
    HEAD_MISMATCH = "head_mismatch"


@dataclass(frozen=True)
class Problem:
    """The first thing found wrong, and where.

    Attributes:
        kind: what was done.
        seq: the first seq it concerns.
        last_seq: the last seq it concerns (``seq`` for one record; a head
            mismatch can only be narrowed to the records between two heads).
        message: what was found, for a person, with positions; never record content.
        position: index in the records given, for a record problem.
        head_index: index in the heads given, for a head problem.
    """

    kind: ProblemKind
    seq: int
    last_seq: int
    message: str
    position: int | None = None
    head_index: int | None = None


@dataclass(frozen=True)
class VerifyReport:
    """What a verification checked and the first problem it found.

    Attributes:
        tenant_id: whose log.
        checked_records: records whose hash and link verified, from the start.
        checked_heads: heads whose signature verified and whose root matched the records.
        signed_through: the largest seq covered by such a head (0 for none);
            records after it are protected by the chain alone.
        problem: the first problem, or ``None``.
    """

    tenant_id: str
    checked_records: int
    checked_heads: int
    signed_through: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return self.problem is None


@dataclass(frozen=True)
class RangeAnchor:
    """What ``verify_range`` must know of the records before the range: O(log n) hashes.

    Attributes:
        prev_hash: hash of record ``start_seq - 1`` (``GENESIS_HASH`` for a range from seq 1).
        frontier: Merkle frontier over the hashes of records ``1..start_seq - 1``.
    """

    prev_hash: str
    frontier: Frontier

    @property
    def size(self) -> int:
        """How many records precede the range."""
        return self.frontier.size


GENESIS_ANCHOR = RangeAnchor(prev_hash=GENESIS_HASH, frontier=Frontier())


def anchor_from_hashes(record_hashes: Sequence[str]) -> RangeAnchor:
    """The anchor after records whose hashes (hex, seq order) are ``record_hashes``."""
    if not record_hashes:
        return GENESIS_ANCHOR
    return RangeAnchor(prev_hash=record_hashes[-1], frontier=frontier_of([bytes.fromhex(h) for h in record_hashes]))


def extend_anchor(anchor: RangeAnchor, records: Sequence[AuditRecord]) -> RangeAnchor:
    """The anchor after ``records`` follow ``anchor``, e.g. a stored head's anchor plus the records since.

    Nothing is checked here: if those records were tampered with, the range's
    heads will not match and ``verify_range`` reports it.
    """
    frontier = anchor.frontier
    for record in records:
        frontier = frontier.append(bytes.fromhex(record.hash))
    prev_hash = records[-1].hash if records else anchor.prev_hash
    return RangeAnchor(prev_hash=prev_hash, frontier=frontier)


def verify_log(
    records: Sequence[AuditRecord],
    heads: Sequence[SignedHead],
    public_keys: PublicKeys,
    *,
    tenant_id: str | None = None,
) -> VerifyReport:
    """Verify a whole log, records in storage order, against its signed heads.

    Args:
        records: the tenant's records as stored, in storage order.
        heads: the tenant's signed heads, in any order; take them from where
            the log's writer cannot rewrite them (published, WORM-locked).
        public_keys: every published key by key id, retired ones included.
        tenant_id: whose log this must be; the first record's tenant (or first
            head's) when omitted. Pass it when known, so a whole log swapped for
            another tenant's is caught.
    """
    tenant = _tenant_of(records, heads, tenant_id)
    return _verify(records, heads, public_keys, tenant, GENESIS_ANCHOR, math.inf)


def verify_range(
    records: Sequence[AuditRecord],
    start_seq: int,
    end_seq: int,
    heads: Sequence[SignedHead],
    public_keys: PublicKeys,
    anchor: RangeAnchor,
    *,
    tenant_id: str | None = None,
) -> VerifyReport:
    """Verify records ``start_seq..end_seq`` without the records before them.

    ``anchor`` stands for the records before the range: the last one's hash
    (for the first link) and the Merkle frontier of their hashes (so a head's
    root can be recomputed from the frontier plus the range). The anchor needs
    no trust of its own: a head with size in the range matches only if the
    anchor and the records up to it are what the head signed. A head whose size
    equals ``start_seq - 1`` checks the anchor directly. Heads beyond
    ``end_seq`` are not matched, but a verified one proves that records the
    range lacks existed (``truncated``). All heads' signatures are checked.

    Raises:
        ValueError: ``start_seq`` does not follow the anchor, or the range is empty.
    """
    if start_seq != anchor.size + 1:
        raise ValueError(f"range starts at seq {start_seq} but the anchor covers seq 1..{anchor.size}")
    if end_seq < start_seq:
        raise ValueError(f"range {start_seq}..{end_seq} is empty")
    tenant = _tenant_of(records, heads, tenant_id)
    return _verify(records, heads, public_keys, tenant, anchor, end_seq)


def verify_heads_consistent(
    old: SignedHead, new: SignedHead, proof: Sequence[bytes], public_keys: PublicKeys
) -> VerifyReport:
    """Whether ``new`` extends ``old`` (an RFC 6962 consistency proof), for a monitor holding heads only.

    ``old`` is the head the monitor kept, ``new`` the one it just fetched. A
    ``new`` over fewer records is ``truncated``; a proof that does not verify
    means records ``1..old.size`` changed (``head_mismatch``). On success
    ``signed_through`` is ``new``'s size.
    """
    tenant = old.head.tenant_id
    for index, signed in enumerate((old, new)):
        forged = _forgery(index, signed, public_keys, tenant)
        if forged is not None:
            return VerifyReport(tenant, 0, 0, 0, forged)
    problem: Problem | None = None
    if new.head.size < old.head.size:
        problem = Problem(
            ProblemKind.TRUNCATED, new.head.size + 1, old.head.size,
            f"head #1 covers seq 1..{new.head.size}, fewer than head #0's 1..{old.head.size}: the log shrank",
            head_index=1,
        )
    elif not verify_consistency(
        old.head.size, new.head.size, _root_bytes(old.head), _root_bytes(new.head), proof
    ):
        problem = Problem(
            ProblemKind.HEAD_MISMATCH, 1, old.head.size,
            f"head #1 does not extend head #0: records in seq 1..{old.head.size} were rewritten",
            head_index=1,
        )
    signed_through = 0 if problem else new.head.size
    return VerifyReport(tenant, 0, 0 if problem else 2, signed_through, problem)


def verify_record_in_head(
    record: AuditRecord, signed: SignedHead, proof: Sequence[bytes], public_keys: PublicKeys
) -> VerifyReport:
    """Whether one record is, unchanged, in the tree a signed head covers (an inclusion proof).

    For a reader holding one record, e.g. a SIEM consumer. On success
    ``signed_through`` is the record's seq.
    """
    tenant = signed.head.tenant_id
    forged = _forgery(0, signed, public_keys, tenant)
    if forged is not None:
        return VerifyReport(tenant, 0, 0, 0, forged)
    if _recomputed_hash(record) != record.hash:
        edited = Problem(ProblemKind.EDITED, record.seq, record.seq, f"record seq {record.seq} does not match its hash")
        return VerifyReport(tenant, 0, 0, 0, edited)
    included = record.tenant_id == tenant and verify_inclusion(
        bytes.fromhex(record.hash), record.seq - 1, signed.head.size, proof, _root_bytes(signed.head)
    )
    if not included:
        mismatch = Problem(
            ProblemKind.HEAD_MISMATCH, record.seq, record.seq,
            f"record seq {record.seq} is not in the tree head #0 signed (size {signed.head.size})",
            head_index=0,
        )
        return VerifyReport(tenant, 1, 0, 0, mismatch)
    return VerifyReport(tenant, 1, 1, record.seq, None)


def _verify(
    records: Sequence[AuditRecord],
    heads: Sequence[SignedHead],
    public_keys: PublicKeys,
    tenant: str,
    anchor: RangeAnchor,
    end_seq: float,
) -> VerifyReport:
    wanted = {signed.head.size for signed in heads}
    accepted, roots, record_problem = _walk(records, tenant, anchor, end_seq, wanted)
    checks = _HeadChecks(public_keys, tenant, anchor, roots, anchor.size + accepted, record_problem is None, end_seq)
    head_problems, checked_heads, signed_through = checks.run(heads)
    candidates = ([record_problem] if record_problem else []) + head_problems
    first = min(candidates, key=lambda p: (p.seq, p.head_index is not None), default=None)
    return VerifyReport(tenant, accepted, checked_heads, signed_through, first)


def _walk(
    records: Sequence[AuditRecord], tenant: str, anchor: RangeAnchor, end_seq: float, wanted: set[int]
) -> tuple[int, dict[int, bytes], Problem | None]:
    """Check records in storage order; the count accepted, roots at the wanted sizes, the first problem."""
    frontier = anchor.frontier
    roots = {frontier.size: frontier.root()} if frontier.size in wanted else {}
    prev_hash = anchor.prev_hash
    for pos, record in enumerate(records):
        problem = _record_problem(records, pos, frontier.size + 1, prev_hash, tenant, anchor, end_seq)
        if problem is not None:
            return pos, roots, problem
        frontier = frontier.append(bytes.fromhex(record.hash))
        if frontier.size in wanted:
            roots[frontier.size] = frontier.root()
        prev_hash = record.hash
    return len(records), roots, None


def _record_problem(
    records: Sequence[AuditRecord],
    pos: int,
    expected: int,
    prev_hash: str,
    tenant: str,
    anchor: RangeAnchor,
    end_seq: float,
) -> Problem | None:
    """What is wrong with the record at ``pos``, given that all before it verified."""
    record = records[pos]
    seq = record.seq
    if _recomputed_hash(record) != record.hash:
        stored = "" if seq == expected else f" (it now says seq {seq})"
        return Problem(
            ProblemKind.EDITED, expected, expected,
            f"record seq {expected} at position {pos}{stored} does not match its stored hash: "
            "it was changed after it was written",
            position=pos,
        )
    if record.tenant_id != tenant:
        return _inserted(seq, pos, f"record at position {pos} belongs to another tenant's log")
    if expected > end_seq:
        return _inserted(seq, pos, f"record at position {pos} (seq {seq}) lies past the range's end, seq {end_seq}")
    if seq == expected:
        return None if record.prev_hash == prev_hash else _broken_link(records, pos, expected, anchor)
    if seq > expected:
        return _gap(records, pos, expected, anchor)
    if seq < 1:
        return _inserted(seq, pos, f"record at position {pos} has seq {seq}; seqs start at 1")
    where = "before the range" if seq <= anchor.size else f"at position {seq - anchor.size - 1}"
    return _inserted(seq, pos, f"record at position {pos} repeats seq {seq}, which is already {where}")


def _broken_link(records: Sequence[AuditRecord], pos: int, expected: int, anchor: RangeAnchor) -> Problem:
    """Record ``expected`` is in place and intact but does not link to its predecessor."""
    twins = _positions_of(records, expected, after=pos)
    if twins:
        return _inserted(
            expected, pos,
            f"two records claim seq {expected} (positions {pos} and {twins[0]}); "
            f"the one at {pos} does not link to seq {expected - 1}",
        )
    if expected == anchor.size + 1:
        before = "the start of the log" if anchor.size == 0 else f"seq {anchor.size}, the last record before the range"
        return Problem(
            ProblemKind.EDITED, expected, expected,
            f"record seq {expected} at position {pos} does not link to {before}: "
            "it, or what precedes it, was rewritten",
            position=pos,
        )
    return Problem(
        ProblemKind.EDITED, expected - 1, expected - 1,
        f"record seq {expected - 1} at position {pos - 1} was changed and rehashed after seq {expected} "
        f"was written: seq {expected} links to a different hash",
        position=pos - 1,
    )


def _gap(records: Sequence[AuditRecord], pos: int, expected: int, anchor: RangeAnchor) -> Problem:
    """Record ``seq > expected`` sits where ``expected`` belongs: deleted, reordered or inserted."""
    record = records[pos]
    seq = record.seq
    later = _positions_of(records, expected, after=pos)
    if not later:
        missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
        return Problem(
            ProblemKind.DELETED, expected, seq - 1,
            f"{missing} missing: position {pos} holds seq {seq}",
            position=pos,
        )
    unique = sum(1 for r in records if r.seq == seq) == 1
    if unique and _links_into_log(records, record, anchor):
        return Problem(
            ProblemKind.REORDERED, expected, expected,
            f"seq {expected} is at position {later[0]}, after seq {seq} at position {pos}: the order was changed",
            position=pos,
        )
    return _inserted(
        seq, pos,
        f"record at position {pos} claims seq {seq} but does not fit the chain; "
        f"seq {expected}, which comes next, is at position {later[0]}",
    )


def _links_into_log(records: Sequence[AuditRecord], record: AuditRecord, anchor: RangeAnchor) -> bool:
    """Whether ``record`` links to the record one seq before it, wherever that one is."""
    if record.seq - 1 == anchor.size:
        return record.prev_hash == anchor.prev_hash
    return any(r.seq == record.seq - 1 and r.hash == record.prev_hash for r in records)


def _positions_of(records: Sequence[AuditRecord], seq: int, *, after: int) -> list[int]:
    return [i for i in range(after + 1, len(records)) if records[i].seq == seq]


def _inserted(seq: int, pos: int, message: str) -> Problem:
    return Problem(ProblemKind.INSERTED, seq, seq, message, position=pos)


@dataclass(frozen=True)
class _HeadChecks:
    """Checks heads against what the record walk established."""

    public_keys: PublicKeys
    tenant: str
    anchor: RangeAnchor
    roots: Mapping[int, bytes]
    accepted_through: int
    records_clean: bool
    end_seq: float

    def run(self, heads: Sequence[SignedHead]) -> tuple[list[Problem], int, int]:
        """Problems (in size order), how many heads verified, and the largest verified size."""
        problems: list[Problem] = []
        verified: list[int] = []
        order = sorted(range(len(heads)), key=lambda i: (heads[i].head.size, heads[i].head.time_ms))
        for index in order:
            problem = self._check(index, heads[index], verified)
            if problem is not None:
                problems.append(problem)
        return problems, len(verified), max(verified, default=0)

    def _check(self, index: int, signed: SignedHead, verified: list[int]) -> Problem | None:
        head = signed.head
        forged = _forgery(index, signed, self.public_keys, self.tenant)
        if forged is not None:
            return forged
        if head.size < self.anchor.size:
            return None
        if head.size <= self.accepted_through:
            if self.roots[head.size] == _root_bytes(head):
                verified.append(head.size)
                return None
            return self._mismatch(index, head, verified)
        if self.records_clean and self.accepted_through < self.end_seq:
            last = int(min(head.size, self.end_seq))
            return Problem(
                ProblemKind.TRUNCATED, self.accepted_through + 1, last,
                f"the records end at seq {self.accepted_through}, but head #{index} covers seq 1..{head.size}: "
                f"seq {self.accepted_through + 1}..{last} were removed",
                head_index=index,
            )
        return None

    def _mismatch(self, index: int, head: TreeHead, verified: list[int]) -> Problem:
        if head.size == self.anchor.size:
            return Problem(
                ProblemKind.HEAD_MISMATCH, 1, head.size,
                f"head #{index} (size {head.size}) does not match the anchor of the range: "
                "the records before the range differ from what was signed, or the anchor is wrong",
                head_index=index,
            )
        lower = max((size for size in verified if size < head.size), default=self.anchor.size)
        return Problem(
            ProblemKind.HEAD_MISMATCH, lower + 1, head.size,
            f"head #{index} signed a different root for seq 1..{head.size}: a record in seq "
            f"{lower + 1}..{head.size} was rewritten (and the chain after it recomputed)",
            head_index=index,
        )


def _forgery(index: int, signed: SignedHead, public_keys: PublicKeys, tenant: str) -> Problem | None:
    head = signed.head
    if head.key_id not in public_keys:
        reason = f"is signed by key {str(head.key_id)[:16]!r}, which is not a published audit key"
    elif not verify_head(public_keys, signed):
        reason = "does not carry a valid signature"
    elif head.tenant_id != tenant:
        reason = "belongs to another tenant's log"
    else:
        return None
    return Problem(
        ProblemKind.FORGED_HEAD, head.size, head.size, f"head #{index} (size {head.size}) {reason}", head_index=index
    )


def _root_bytes(head: TreeHead) -> bytes:
    return bytes.fromhex(head.root_hex)


def _recomputed_hash(record: AuditRecord) -> str | None:
    try:
        return record_hash(record)
    except (TypeError, ValueError):
        return None


def _tenant_of(records: Sequence[AuditRecord], heads: Sequence[SignedHead], tenant_id: str | None) -> str:
    if tenant_id is not None:
        return tenant_id
    if records:
        return records[0].tenant_id
    return heads[0].head.tenant_id if heads else ""
