"""The sealed segment format: a run of one tenant's records, closed by the head signed over them.

A segment is UTF-8 JSON lines: records ``first..last`` in seq order, each exactly as
``record_to_json`` writes it, then one line with the signed tree head at size ``last``, exactly as
``signed_head_to_json`` writes it. It is named ``<first:012d>-<last:012d>.jsonl`` so names sort in
seq order. Pure: bytes in, bytes out.

Reading is forgiving where writing is strict: a line someone edited so it is no longer canonical
is still read (leniently) so the verifier can say *which* record was edited, and a line that is
not even JSON is reported with its place instead of stopping the read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from services.audit.chain import AuditRecord, _record_from_fields, record_from_json, record_to_json
from services.audit.signed_heads import SignedHead, signed_head_from_json, signed_head_to_json

NAME_RE = re.compile(r"^(\d{12})-(\d{12})\.jsonl$")


def segment_name(first_seq: int, last_seq: int) -> str:
    return f"{first_seq:012d}-{last_seq:012d}.jsonl"


def parse_name(name: str) -> tuple[int, int] | None:
    """``(first_seq, last_seq)`` of a segment name, or None for any other name."""
    match = NAME_RE.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def encode(records: list[AuditRecord], head: SignedHead) -> bytes:
    """The segment holding ``records`` (consecutive seqs) closed by ``head`` (signed at the last seq).

    Raises:
        ValueError: records are empty, not consecutive, or the head's size is not the last seq.
    """
    if not records:
        raise ValueError("a segment holds at least one record")
    for before, after in zip(records, records[1:]):
        if after.seq != before.seq + 1:
            raise ValueError(f"segment records must be consecutive: seq {after.seq} follows {before.seq}")
    if head.head.size != records[-1].seq or head.head.tenant_id != records[0].tenant_id:
        raise ValueError(f"the closing head (size {head.head.size}) must be signed at seq {records[-1].seq}")
    lines = [record_to_json(r) for r in records] + [signed_head_to_json(head)]
    return b"\n".join(lines) + b"\n"


def encode_stored(stored: list[bytes], head: SignedHead) -> bytes:
    """``encode`` from records already in their stored form (as ``record_to_json`` wrote them)."""
    if not stored:
        raise ValueError("a segment holds at least one record")
    return b"\n".join([*stored, signed_head_to_json(head)]) + b"\n"


@dataclass(frozen=True)
class Unreadable:
    """A line that is neither a record nor a head: where it is, and why."""

    segment: str
    line: int
    reason: str


@dataclass
class Decoded:
    records: list[AuditRecord] = field(default_factory=list)
    where: list[tuple[str, int]] = field(default_factory=list)  # (segment, line) of each record
    heads: list[SignedHead] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    noncanonical: list[tuple[str, int]] = field(default_factory=list)  # (segment, line) read leniently


def decode(name: str, data: bytes, into: Decoded | None = None) -> Decoded:
    """Read segment ``name``'s records and heads into ``into`` (a new ``Decoded`` when None)."""
    out = into if into is not None else Decoded()
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line:
            continue
        try:
            obj = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            out.unreadable.append(Unreadable(name, number, f"not JSON ({exc.__class__.__name__})"))
            continue
        if isinstance(obj, dict) and "signature_hex" in obj:
            try:
                out.heads.append(signed_head_from_json(line))
            except ValueError as exc:
                out.unreadable.append(Unreadable(name, number, f"not a signed head: {exc}"))
            continue
        try:
            out.records.append(record_from_json(line))
            out.where.append((name, number))
        except ValueError:
            try:  # an edited line: read it anyway, so its hash mismatch names the record
                out.records.append(_record_from_fields(obj))
                out.where.append((name, number))
                out.noncanonical.append((name, number))
            except (ValueError, KeyError, TypeError) as exc:
                out.unreadable.append(Unreadable(name, number, f"not an audit record ({exc.__class__.__name__})"))
    return out
