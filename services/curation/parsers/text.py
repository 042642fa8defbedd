"""Plain text: paragraphs (blank-line separated) grouped into chunks of about ``text_chunk_bytes``."""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.textio import Line, TextSource


class BlockChunker:
    """Groups lines into chunks, cutting at blank lines once ``target`` bytes are reached, never above ``limit``.

    Also used for source code (code.py), which may force a cut before a new symbol.
    """

    def __init__(self, target: int, limit: int) -> None:
        self.target = target
        self.limit = limit
        self.lines: list[Line] = []
        self.size = 0

    def add(self, line: Line) -> list[Line] | None:
        """Add a line; returns a finished chunk when one is due."""
        size = len(line.text.encode("utf-8")) + 1
        done = None
        if self.lines and (self.size + size > self.limit or (not line.text.strip() and self.size >= self.target)):
            done = self.take()
        if self.lines or line.text.strip():
            self.lines.append(line)
            self.size += size
        return done

    def take(self) -> list[Line] | None:
        lines, self.lines, self.size = self.lines, [], 0
        return lines if any(line.text.strip() for line in lines) else None


def chunk_document(lines: list[Line], base: Provenance, fmt: str, fields: dict[str, object] | None = None) -> Document:
    text = "\n".join(line.text for line in lines).strip("\n")
    return Document(text=text, provenance=replace(base, line=lines[0].number, offset=lines[0].offset), kind="text",
                    fields=fields or {}, format=fmt)


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    chunker = BlockChunker(config.text_chunk_bytes, config.max_record_bytes)
    for line in source.lines():
        if isinstance(line, Quarantined):
            yield line
            continue
        if (chunk := chunker.add(line)) is not None:
            yield chunk_document(chunk, source.base, "text")
    if (chunk := chunker.take()) is not None:
        yield chunk_document(chunk, source.base, "text")
