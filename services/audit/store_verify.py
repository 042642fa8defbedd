"""Verify a tenant's log as WORM storage holds it: read its sealed segments, check chain and heads.

What ``privtune audit verify`` runs. Beyond the chain and the heads (``verify``), a stored log must
have the *shape* the sealer gives it, and any departure is a problem:

- each segment holds exactly the seqs its name says, in order, and ends with a head signed at its
  last seq (a segment without one, or with records past its head, was not written by the sealer);
- every line is a record or a head in canonical form (an edited line that still parses, e.g. with a
  repeated key two readers would read differently, is ``edited``);
- so every sealed record is covered by a verified head: ``signed_through`` reaches the last record;
- what the metadata store says was sealed (``audit_segments``: names, ranges, sha256) is there.

The heads in the segments are joined by any head given from elsewhere: the heads the metadata store
kept, or one an auditor kept. That is what exposes a deleted trailing segment on storage that cannot
stop it (a local folder). A range (``start_seq..end_seq``) is widened to whole segments, so the head
that closes the last one is checked too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit import segments
from services.audit.signed_heads import SignedHead, verify_head
from services.audit.verify import (Problem, ProblemKind, VerifyReport, anchor_from_hashes, verify_log,
                                   verify_range)
from services.audit.worm.protocol import SegmentStore


@dataclass(frozen=True)
class SealedSegment:
    """What the metadata store recorded of a sealed segment."""

    name: str
    first_seq: int
    last_seq: int
    sha256: str


@dataclass(frozen=True)
class StoredLogReport:
    """A verification of one tenant's stored log.

    Attributes:
        report: what the chain and head checks found (``report.problem`` is the first problem).
        location: ``segment:line`` of the problem's first record, when it is one that was read.
        segments: how many segments were read.
        shape: problems with the log's shape (see the module doc), each ``segment[:line]: what``.
        unreadable: lines that are neither a record nor a head (``segment:line: why``).
        extra_versions: segments the store holds more than one version of (an overwrite after
            sealing: the original, locked version is what was verified).
        foreign: names in the tenant's storage that are not segment names (not read).
    """

    tenant_id: str
    report: VerifyReport
    location: str = ""
    segments: int = 0
    shape: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    extra_versions: tuple[str, ...] = ()
    foreign: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.unreadable and not self.shape


def verify_stored_log(store: SegmentStore, tenant: str, public_keys: Mapping[str, Ed25519PublicKey],
                      extra_heads: Sequence[SignedHead] = (), start_seq: int | None = None,
                      end_seq: int | None = None, sealed: Sequence[SealedSegment] | None = None) -> StoredLogReport:
    """Verify tenant ``tenant``'s sealed log (or the segments holding records ``start_seq..end_seq``).

    ``sealed``: what the metadata store recorded as sealed for this tenant (None: not known).
    """
    decoded = segments.Decoded()
    extra, foreign, shape = [], [], []
    names = store.names(tenant)
    found: dict[str, bytes] = {}
    for name in names:
        span = segments.parse_name(name)
        if span is None:
            foreign.append(name)
            continue
        read = store.read(tenant, name)
        found[name] = read.data
        if read.extra_versions:
            extra.append(f"{name}: {read.extra_versions} later version(s) beside the sealed one")
        one = segments.decode(name, read.data)
        shape.extend(_segment_shape(name, span, one, public_keys, tenant))
        for seg, line in one.noncanonical:
            shape.append(f"{seg}:{line}: edited: the line is not in the canonical form the sealer writes "
                         "(a repeated key or changed spacing: two readers could see different records)")
        _merge(decoded, one)
    for entry in sealed or ():
        data = found.get(entry.name)
        if data is None:
            shape.append(f"{entry.name}: truncated: the store sealed records {entry.first_seq}..{entry.last_seq} "
                         "in this segment, and storage no longer has it")
        elif hashlib.sha256(data).hexdigest() != entry.sha256:
            shape.append(f"{entry.name}: edited: its bytes differ from what was sealed (sha256 recorded at sealing)")
    heads = [*decoded.heads, *extra_heads]
    if start_seq is None:
        report = verify_log(decoded.records, heads, public_keys, tenant_id=tenant)
        offset = 0
    else:
        start, end = _whole_segments(names, start_seq, end_seq)
        before = [r for r in decoded.records if r.seq < start]
        in_range = [r for r in decoded.records if start <= r.seq <= end]
        anchor = anchor_from_hashes([r.hash for r in before])
        if anchor.size != start - 1:  # records before the range are missing: say so, from the range's start
            shape.append(f"the records before seq {start} are {len(before)}, not {start - 1}: some were removed")
            anchor = anchor_from_hashes([r.hash for r in before][:0])
            start = 1
            in_range = [r for r in decoded.records if r.seq <= end]
        report = verify_range(in_range, start, max(end, start), heads, public_keys, anchor, tenant_id=tenant)
        offset = len(decoded.records) - len([r for r in decoded.records if r.seq >= start])
    last = decoded.records[-1].seq if decoded.records else 0
    if report.ok and start_seq is None and report.signed_through < last:
        report = replace(report, problem=Problem(
            ProblemKind.INSERTED, report.signed_through + 1, last,
            f"records {report.signed_through + 1}..{last} are in sealed storage but under no signed head: "
            "the sealer closes every segment with one, so they were added afterwards"))
    location = ""
    if report.problem is not None and report.problem.position is not None:
        index = offset + report.problem.position
        if index < len(decoded.where):
            seg, line = decoded.where[index]
            location = f"{seg}:{line}"
    unreadable = tuple(f"{u.segment}:{u.line}: {u.reason}" for u in decoded.unreadable)
    return StoredLogReport(tenant_id=tenant, report=report, location=location, segments=len(names) - len(foreign),
                           shape=tuple(shape), unreadable=unreadable, extra_versions=tuple(extra),
                           foreign=tuple(foreign))


def _merge(into: segments.Decoded, one: segments.Decoded) -> None:
    into.records.extend(one.records)
    into.where.extend(one.where)
    into.heads.extend(one.heads)
    into.unreadable.extend(one.unreadable)
    into.noncanonical.extend(one.noncanonical)


def _segment_shape(name: str, span: tuple[int, int], one: segments.Decoded,
                   public_keys: Mapping[str, Ed25519PublicKey], tenant: str) -> list[str]:
    """What is wrong with one segment's shape (nothing, for what the sealer writes)."""
    first, last = span
    seqs = [r.seq for r in one.records]
    problems = []
    if seqs != list(range(first, last + 1)):
        problems.append(f"{name}: its records are seq {_ranges(seqs)}, not {first}..{last} as its name says")
    closing = [h for h in one.heads if h.head.size == last and h.head.tenant_id == tenant
               and verify_head(public_keys, h)]
    if not closing:
        problems.append(f"{name}: no head signed by a published key closes it at seq {last}: "
                        "the sealer ends every segment with one")
    return problems


def _ranges(seqs: list[int]) -> str:
    if not seqs:
        return "(none)"
    return f"{seqs[0]}..{seqs[-1]} ({len(seqs)} records)" if seqs == list(range(seqs[0], seqs[-1] + 1)) \
        else ", ".join(map(str, seqs[:8])) + ("..." if len(seqs) > 8 else "")


def _whole_segments(names: Sequence[str], start_seq: int, end_seq: int | None) -> tuple[int, int]:
    """``start_seq..end_seq`` widened to the segments that hold them (so their closing heads are checked)."""
    spans = [s for s in (segments.parse_name(n) for n in names) if s is not None]
    start = min((a for a, b in spans if a <= start_seq <= b), default=start_seq)
    end = end_seq if end_seq is not None else max((b for _, b in spans), default=start_seq)
    end = max((b for a, b in spans if a <= end <= b), default=end)
    return start, end
