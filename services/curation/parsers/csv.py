"""CSV/TSV with a header row; columns are read like JSON keys (records.py): prompt/completion,
instruction/response, question/answer, text, ...

Rows that are not valid CSV or have the wrong number of fields are quarantined with
their line number; the next rows are still read. A line that cannot be read (binary, or
not UTF-8: see textio.py) is quarantined on its own and its row left out; later rows and
later faults are still read and reported.
"""

from __future__ import annotations

import csv
from dataclasses import replace
from typing import Iterator

from services.curation.documents import Document, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.records import document_from_record
from services.curation.parsers.textio import TextSource


def _delimiter(name: str, header: str) -> str:
    if name.lower().endswith(".tsv") or ("\t" in header and "," not in header):
        return "\t"
    return ";" if ";" in header and "," not in header else ","


def _row_left_out(source: TextSource, start: int, end: int, bad: list[Quarantined]) -> Quarantined:
    """A row spanning several lines (quoted newlines) of which some could not be read."""
    lines = ", ".join(str(q.provenance.line) for q in bad)
    return Quarantined(replace(source.base, line=start), "malformed_csv",
                       f"row at lines {start}-{end} includes line {lines}, which could not be read (see its own "
                       "entry); the whole row was left out")


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    problems: list[Quarantined] = []  # unreadable lines of the row being read
    first: list[str] = []

    def physical_lines() -> Iterator[str]:
        for line in source.lines():
            if isinstance(line, Quarantined):
                problems.append(line)
                yield "\n"  # keeps csv's line count equal to the file's
            else:
                if not first:
                    first.append(line.text)
                yield line.text + "\n"

    lines = physical_lines()
    peeked = next(lines, None)
    if peeked is None:
        yield from problems
        return

    def replay() -> Iterator[str]:
        yield peeked
        yield from lines

    reader = csv.reader(replay(), delimiter=_delimiter(source.name, first[0] if first else ""), strict=True)
    header: list[str] | None = None
    done = 0  # physical lines consumed by complete rows
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            start, done = done + 1, reader.line_num
            yield from problems
            problems.clear()
            too_big = "field larger than field limit" in str(exc)
            yield Quarantined(replace(source.base, line=start), "oversized_record" if too_big else "malformed_csv",
                              f"row at line {start} has a field above the CSV field limit; split it" if too_big else
                              f"row at line {start} is not valid CSV (unbalanced or stray quotes); fix its quoting")
            continue
        start, done = done + 1, reader.line_num
        bad = list(problems)
        yield from problems
        problems.clear()
        if bad and header is None:
            yield Quarantined(replace(source.base, line=start), "malformed_csv",
                              f"the header row (line {start}) could not be read, so no row of this file can be; "
                              "fix the header row")
            return
        if bad:
            if any(cell.strip() for cell in row):
                yield _row_left_out(source, start, done, bad)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip().lower() for cell in row]
            if not any(header):
                yield Quarantined(replace(source.base, line=start), "malformed_csv",
                                  f"the header row (line {start}) has no column names; add a header row")
                return
            continue
        if len(row) != len(header):
            yield Quarantined(replace(source.base, line=start), "malformed_csv",
                              f"row at line {start} has {len(row)} fields but the header has {len(header)}; "
                              "fix the row (an unquoted delimiter?)")
            continue
        record = {name: value for name, value in zip(header, row, strict=True) if name}
        yield document_from_record(record, replace(source.base, line=start), "csv")
    yield from problems
