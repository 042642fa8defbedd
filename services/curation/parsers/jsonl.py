"""JSON Lines: one JSON object per line, each recognised by records.py."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterator

from services.curation.documents import Document, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.json_document import too_deeply_nested
from services.curation.parsers.records import document_from_record
from services.curation.parsers.textio import TextSource


def _cut_off(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether the line ended before its JSON value did (a truncated write, not a typo)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text.rstrip())


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    for line in source.lines():
        if isinstance(line, Quarantined):
            yield line
            continue
        if not line.text.strip():
            continue
        provenance = replace(source.base, line=line.number, offset=line.offset)
        try:
            record = json.loads(line.text)
        except json.JSONDecodeError as exc:
            if _cut_off(exc, line.text):
                at_end = "" if line.terminated else " at the end of the file"
                yield Quarantined(provenance, "truncated_json",
                                  f"line {line.number}{at_end} stops before its JSON object is complete "
                                  "(cut off while writing?); re-export the file")
            else:
                yield Quarantined(provenance, "invalid_json",
                                  f"line {line.number} is not valid JSON ({exc.msg} at column {exc.colno}); "
                                  "fix or remove the line")
            continue
        except RecursionError:
            yield too_deeply_nested(provenance, f"line {line.number}")
            continue
        yield document_from_record(record, provenance, "jsonl")
