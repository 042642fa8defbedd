"""Headed sections of a document (Markdown, HTML), the unit the document -> Q/A recipe works on.

Each section becomes a Document with ``fields = {"title": heading, "path": [h1, h2, ...]}``
(``path`` ends with the title). A section larger than ``max_record_bytes`` is cut at
line boundaries into parts (``fields["part"]`` = 2, 3, ...). Provenance positions are
strictly increasing, so every section has its own ``doc_id``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from services.curation.documents import Document, Provenance


class SectionWriter:
    def __init__(self, base: Provenance, fmt: str, max_bytes: int, keep_indent: bool = True) -> None:
        self.base = base
        self.fmt = fmt
        self.max_bytes = max_bytes
        self._stack: list[tuple[int, str]] = []
        self._title = ""
        self._keep_indent = keep_indent
        self._part = 1
        self._pieces: list[str] = []
        self._size = 0
        self._at: tuple[int, int] | None = None     # (line, offset) of this section or part
        self._last: tuple[int, int] = (-1, -1)

    @property
    def started(self) -> bool:
        """Whether a heading has been seen."""
        return bool(self._stack)

    def set_title(self, title: str) -> None:
        """Title of the text before the first heading (an HTML page's <title>)."""
        if not self._stack:
            self._title = title

    def heading(self, level: int, title: str, line: int, offset: int) -> Iterator[Document]:
        """Close the current section and start one under ``title`` at ``level`` (1 = h1)."""
        yield from self._flush()
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        self._title, self._part, self._at = title, 1, (line, offset)

    def add(self, text: str, line: int, offset: int) -> Iterator[Document]:
        """Append body text; emits a part when the section grows past ``max_bytes``."""
        size = len(text.encode("utf-8"))
        if self._size and self._size + size > self.max_bytes:
            yield from self._flush()
            self._part += 1
        if self._at is None:
            self._at = (line, offset)
        self._pieces.append(text)
        self._size += size

    def drop_last_line(self) -> None:
        """Take back the last ``add`` (Markdown: a paragraph line that turned out to be a setext heading)."""
        if self._pieces:
            self._size -= len(self._pieces.pop().encode("utf-8"))
        if not self._pieces:
            self._at = None

    def finish(self) -> Iterator[Document]:
        yield from self._flush()

    def _flush(self) -> Iterator[Document]:
        body = _tidy("".join(self._pieces), self._keep_indent)
        at = self._at or (0, 0)
        self._pieces, self._size, self._at = [], 0, None
        if not body:
            return
        if at <= self._last:  # keep positions (and so doc ids) unique
            at = (self._last[0], self._last[1] + 1)
        self._last = at
        fields: dict[str, object] = {"title": self._title, "path": [t for _, t in self._stack] or
                                     ([self._title] if self._title else [])}
        if self._part > 1:
            fields["part"] = self._part
        yield Document(text=body, provenance=replace(self.base, line=at[0], offset=at[1]), kind="text",
                       fields=fields, format=self.fmt)


def _tidy(text: str, keep_indent: bool) -> str:
    """Strip trailing (and unless ``keep_indent``, leading) spaces; collapse runs of blank lines into one."""
    out: list[str] = []
    for line in text.split("\n"):
        line = line.rstrip() if keep_indent else line.strip()
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip("\n")
