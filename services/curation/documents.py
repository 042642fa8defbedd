"""What flows through curation: documents with provenance, and quarantined inputs with reasons.

Document text never leaves the tenant's storage and this process: events, logs and
reports carry ids, counts and reasons only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Provenance:
    """Where a document came from: the object key in tenant storage and a position in it."""

    source: str          # object key relative to the dataset's root, e.g. "tickets/2024-01.jsonl"
    line: int = 0        # 1-based line (JSONL/CSV/code), 0 when not line oriented
    offset: int = 0      # byte offset of the record in the (decompressed) object
    page: int = 0        # 1-based PDF page, 0 otherwise
    member: str = ""     # path inside an archive (zip), "" otherwise


@dataclass(frozen=True)
class Document:
    """One unit of text (or one structured record) extracted from raw data.

    ``kind`` says how it was parsed: ``text`` (plain/markdown/html/pdf/code prose),
    ``paired`` (instruction/input/response or prompt/completion), ``chat``
    (``messages``), ``preference`` (prompt/chosen/rejected) or ``ticket`` (a thread).
    ``fields`` holds the structured parts for the non-text kinds; ``text`` is always a
    plain-text rendering used by PII detection, dedupe and quality filters.
    """

    text: str
    provenance: Provenance
    kind: str = "text"
    fields: Mapping[str, object] = field(default_factory=dict)
    format: str = ""     # parser that produced it: jsonl, csv, markdown, html, pdf, tickets, code, text

    @property
    def doc_id(self) -> str:
        """Stable id from provenance (not content), so reports can point at the record."""
        p = self.provenance
        return hashlib.sha256(f"{p.source}\0{p.member}\0{p.line}\0{p.offset}\0{p.page}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Quarantined:
    """An input that could not become a document, with where and why (never its content)."""

    provenance: Provenance
    code: str            # machine-readable: binary_file, bad_encoding, truncated_json, empty_file, oversized_record,
                         # zip_bomb, unsupported_format, malformed_csv, malformed_pdf, ...
    reason: str          # actionable sentence for the report
