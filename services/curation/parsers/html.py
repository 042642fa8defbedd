"""HTML: main text only (no scripts, styles, navigation, headers, footers, sidebars, cookie
banners), cut into sections at h1-h3 like Markdown.

The page is streamed through lxml's event parser, so no tree is built and memory
stays bounded whatever the page size. Positions are approximate (the byte offset and
line of the piece being parsed when a section starts).
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping

from lxml import etree

from services.curation.documents import Document, Quarantined
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.sections import SectionWriter
from services.curation.parsers.textio import TextSource

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form",
                           "svg", "iframe", "button", "select", "canvas", "object", "embed", "dialog"})
_SKIPPED_ROLES = frozenset({"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alert"})
_BOILERPLATE = frozenset({"nav", "navbar", "navigation", "menu", "sidebar", "footer", "cookie", "cookies",
                          "consent", "banner", "breadcrumb", "breadcrumbs", "advert", "advertisement", "ads",
                          "promo", "share", "sharing", "social", "newsletter", "subscribe", "popup", "modal",
                          "skip", "related"})
_BLOCKS = frozenset({"p", "div", "section", "article", "main", "li", "ul", "ol", "table", "tr", "blockquote", "pre",
                     "h4", "h5", "h6", "dd", "dt", "dl", "figure", "figcaption", "br", "hr", "address", "body"})
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3}
_WORDS = re.compile(r"[^a-z0-9]+")
_SPACES = re.compile(r"[ \t\r\f\v\n]+")
_FEED_CHARS = 1024


def _is_boilerplate(tag: str, attrib: Mapping[str, str]) -> bool:
    if tag in _SKIPPED_TAGS or "hidden" in attrib or attrib.get("aria-hidden") == "true":
        return True
    if attrib.get("role", "").lower() in _SKIPPED_ROLES:
        return True
    if re.search(r"display\s*:\s*none", attrib.get("style", "")):
        return True
    words = set(_WORDS.split(f"{attrib.get('class', '')} {attrib.get('id', '')}".lower()))
    return bool(words & _BOILERPLATE)


class _MainText:
    """lxml parser target: turns start/end/data events into sections."""

    def __init__(self, sections: SectionWriter) -> None:
        self.sections = sections
        self.out: list[Document] = []
        self.line = 1
        self.offset = 0
        self._stack: list[tuple[str, bool]] = []   # (tag, skipped)
        self._skipping = 0
        self._pre = 0
        self._cells = 0
        self._heading: tuple[int, list[str]] | None = None
        self._title: list[str] | None = None

    def start(self, tag: object, attrib: Mapping[str, str]) -> None:
        name = tag.lower() if isinstance(tag, str) else ""
        skipped = self._skipping > 0 or _is_boilerplate(name, attrib)
        self._stack.append((name, skipped))
        if skipped:
            self._skipping += 1
            return
        if name == "title" and not self.sections.started:
            self._title = []
        elif name in _HEADINGS:
            self._heading = (_HEADINGS[name], [])
        elif name == "pre":
            self._pre += 1
        elif name in ("td", "th"):
            self._text(" | " if self._cells else "")
            self._cells += 1
        elif name == "tr":
            self._cells = 0
            self._text("\n")
        elif name in _BLOCKS:
            self._text("\n\n" if name in ("p", "div", "section", "article", "blockquote", "pre") else "\n")

    def end(self, tag: object) -> None:
        name = tag.lower() if isinstance(tag, str) else ""
        if not any(t == name for t, _ in self._stack):
            return  # a stray end tag
        while self._stack:
            open_tag, skipped = self._stack.pop()
            if skipped:
                self._skipping -= 1
            else:
                self._close(open_tag)
            if open_tag == name:
                return

    def _close(self, name: str) -> None:
        if name == "title" and self._title is not None:
            self.sections.set_title(_SPACES.sub(" ", "".join(self._title)).strip())
            self._title = None
        elif name in _HEADINGS and self._heading is not None:
            level, parts = self._heading
            self._heading = None
            self.out.extend(self.sections.heading(level, _SPACES.sub(" ", "".join(parts)).strip(),
                                                  self.line, self.offset))
        elif name == "pre":
            self._pre = max(0, self._pre - 1)
        elif name in _BLOCKS:
            self._text("\n")

    def data(self, text: str) -> None:
        if self._skipping:
            return
        if self._title is not None:
            self._title.append(text)
        elif self._heading is not None:
            self._heading[1].append(text)
        else:
            self._text(text if self._pre else _SPACES.sub(" ", text))

    def _text(self, text: str) -> None:
        if self._heading is None and self._title is None:
            self.out.extend(self.sections.add(text, self.line, self.offset))

    def close(self) -> None:
        self.out.extend(self.sections.finish())


def parse(source: TextSource, config: ParserConfig) -> Iterator[Document | Quarantined]:
    target = _MainText(SectionWriter(source.base, "html", config.max_record_bytes, keep_indent=False))
    parser = etree.HTMLParser(target=target, remove_comments=True, no_network=True)
    for item in source.chunks():
        if isinstance(item, Quarantined):  # bytes that are not UTF-8 (left out); the rest is still read
            yield item
            continue
        text, target.offset = item
        for start in range(0, len(text), _FEED_CHARS):
            piece = text[start:start + _FEED_CHARS]
            parser.feed(piece)
            yield from target.out
            target.out.clear()
            target.line += piece.count("\n")
            target.offset += len(piece.encode("utf-8"))
    parser.close()
    yield from target.out
