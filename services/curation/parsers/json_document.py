"""A JSON file: an array of records, a wrapper object such as ``{"tickets": [...]}``, or one record.

Support-ticket exports are usually this shape; each ticket is recognised by
records.py/tickets.py. The file is scanned, never loaded whole (json_stream.py).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterator

from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.json_stream import MAX_DEPTH, JsonProblem, JsonRecord, JsonScanner
from services.curation.parsers.records import document_from_record
from services.curation.parsers.textio import TextSource, bad_encoding, oversized

_REASONS = {
    "truncated_json": "the JSON document stops before it is complete (cut off while writing?); re-export it",
    "invalid_json/unbalanced": "the JSON document is malformed here: a closing bracket does not match the open one "
                               "(unbalanced brackets); fix the file",
    "invalid_json/trailing": "the JSON document goes on after its top-level value ends (more than one top-level "
                             "value: use the .jsonl extension for JSON Lines); fix the file",
    "invalid_json/scalar": "the JSON document holds a bare value or stray text where an object or array was "
                           "expected; fix the file",
    "too_deeply_nested": f"this record is nested more than {MAX_DEPTH} levels deep (the parser's fixed limit; "
                         "the JSON itself may be valid) and was left out; flatten it (store deep parts as "
                         "strings, or split them into records)",
    "empty_file": "the file holds only whitespace; upload the real export",
}


def _problem(source: TextSource, problem: JsonProblem, limit: int) -> Quarantined:
    if problem.code == "oversized_record":
        return oversized(source.base, 0, problem.offset, problem.size, limit)
    provenance = replace(source.base, line=problem.line, offset=problem.offset)
    reason = _REASONS.get(f"{problem.code}/{problem.detail}") or _REASONS[problem.code]
    return Quarantined(provenance, problem.code, f"line {problem.line}, byte offset {problem.offset}: {reason}")


def too_deeply_nested(provenance: Provenance, where: str) -> Quarantined:
    """``json.loads`` ran out of recursion: the record is valid JSON as far as we know, just too deep."""
    return Quarantined(provenance, "too_deeply_nested",
                       f"{where} is valid as far as it was read but nested deeper than the JSON parser can "
                       "follow (about 1000 levels); flatten it (store deep parts as strings, or split them into "
                       "records)")


def _record(source: TextSource, record: JsonRecord) -> Document | Quarantined:
    provenance = replace(source.base, line=record.line, offset=record.offset)
    try:
        value = json.loads(record.raw)
    except UnicodeDecodeError as exc:
        return bad_encoding(source.base, record.line, record.offset + exc.start, "UTF-8")
    except json.JSONDecodeError as exc:
        return Quarantined(provenance, "invalid_json", f"record at line {record.line} is not valid JSON "
                                                       f"({exc.msg}); fix the file")
    except RecursionError:
        return too_deeply_nested(provenance, f"record at line {record.line}")
    return document_from_record(value, provenance, "json")


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    scanner: JsonScanner | None = None
    for item in source.byte_chunks():
        if isinstance(item, Quarantined):
            yield item
            return
        chunk, offset = item
        scanner = scanner or JsonScanner(config.max_record_bytes, start_offset=offset)
        for found in scanner.feed(chunk):
            yield _record(source, found) if isinstance(found, JsonRecord) else \
                _problem(source, found, config.max_record_bytes)
        if scanner.failed:
            return
    for problem in (scanner or JsonScanner(config.max_record_bytes)).finish():
        yield _problem(source, problem, config.max_record_bytes)
