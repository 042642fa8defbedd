"""Markdown: one section per heading (ATX ``#`` or setext underlines), fenced code kept intact."""

from __future__ import annotations

import re
from typing import Iterator

from services.curation.documents import Document, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.sections import SectionWriter
from services.curation.parsers.textio import Line, TextSource

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def heading_text(raw: str) -> str:
    return raw.strip().strip("*_`").strip()


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    sections = SectionWriter(source.base, "markdown", config.max_record_bytes)
    fence = ""
    previous: Line | None = None  # the last body line, when it could be a setext heading's text
    for line in source.lines():
        if isinstance(line, Quarantined):
            yield line
            previous = None
            continue
        text = line.text
        if fence:
            if text.strip().startswith(fence):
                fence = ""
            yield from sections.add(text + "\n", line.number, line.offset)
            continue
        if m := _FENCE.match(text):
            fence = m.group(1)
            previous = None
            yield from sections.add(text + "\n", line.number, line.offset)
            continue
        if m := _ATX.match(text):
            previous = None
            yield from sections.heading(len(m.group(1)), heading_text(m.group(2) or ""), line.number, line.offset)
            continue
        if previous is not None and (m := _SETEXT.match(text)):
            sections.drop_last_line()
            yield from sections.heading(1 if m.group(1)[0] == "=" else 2, heading_text(previous.text),
                                        previous.number, previous.offset)
            previous = None
            continue
        previous = line if text.strip() and not text.startswith(("    ", "\t")) else None
        yield from sections.add(text + "\n", line.number, line.offset)
    yield from sections.finish()
