"""Bytes to text with bounded memory: encoding and binary sniffing, lines, chunks.

Nothing here holds more than one record (``max_record_bytes``) or one chunk: a 100 MB
line is skipped in slices and reported, never read whole. Problems come out as
``Quarantined`` items (with line and byte offset, never content) in the stream.
"""

from __future__ import annotations

import codecs
import io
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterator

from services.curation.documents import Provenance, Quarantined

SNIFF_BYTES = 8192
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CONTROL = bytes(b for b in range(32) if b not in (8, 9, 10, 12, 13, 27)) + b"\x7f"
_MAX_CONTROL_RATIO = 0.05


def bom_encoding(head: bytes) -> str | None:
    """The encoding announced by a byte-order mark, if any."""
    return next((enc for bom, enc in _BOMS if head.startswith(bom)), None)


def looks_binary(head: bytes) -> bool:
    """NUL bytes, or more than 5% control characters: not text (images, executables, UTF-16 without BOM)."""
    if b"\0" in head:
        return True
    control = len(head) - len(head.translate(None, _CONTROL))
    return control > _MAX_CONTROL_RATIO * len(head)


def first_utf8_error(head: bytes) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence in ``head`` (a cut-off tail is fine), or None."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        return exc.start
    return None


@dataclass(frozen=True)
class Line:
    number: int        # 1-based
    offset: int        # byte offset of its first byte (approximate for UTF-16/32)
    text: str          # without the line terminator
    terminated: bool   # False for a last line with no newline


def bad_encoding(base: Provenance, line: int, offset: int, encoding: str) -> Quarantined:
    where = f"line {line}, byte offset {offset}" if line else f"byte offset {offset}"
    return Quarantined(replace(base, line=line, offset=offset), "bad_encoding",
                       f"not valid {encoding} at {where}; re-save the file as UTF-8")


def oversized(base: Provenance, line: int, offset: int, size: int, limit: int, what: str = "line") -> Quarantined:
    where = f"{what} {line}" if line else f"record at byte offset {offset}"
    return Quarantined(replace(base, line=line, offset=offset), "oversized_record",
                       f"{where} is {size} bytes or more, above max_record_bytes={limit}; split it or raise the limit")


class TextSource:
    """A text object being parsed: its stream, encoding, provenance and record limit."""

    def __init__(self, stream: BinaryIO, encoding: str, base: Provenance, name: str, max_record_bytes: int) -> None:
        self.stream = stream
        self.encoding = encoding
        self.base = base
        self.name = name
        self.max_record_bytes = max_record_bytes

    @property
    def _wide(self) -> bool:
        return self.encoding in ("utf-16", "utf-32")

    def lines(self) -> Iterator[Line | Quarantined]:
        """Lines with numbers and byte offsets; oversized or undecodable lines become ``Quarantined``."""
        return self._wide_lines() if self._wide else self._utf8_lines()

    def _utf8_lines(self) -> Iterator[Line | Quarantined]:
        cap = self.max_record_bytes
        offset = len(codecs.BOM_UTF8) if self.encoding == "utf-8-sig" else 0
        if offset:
            self.stream.read(offset)
        number = 0
        while raw := self.stream.readline(cap + 1):
            number += 1
            start = offset
            offset += len(raw)
            if len(raw) > cap and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):  # skip the rest of the line in slices
                    raw = self.stream.readline(cap)
                    offset += len(raw)
                yield oversized(self.base, number, start, offset - start, cap)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield bad_encoding(self.base, number, start + exc.start, "UTF-8")
                continue
            terminated = text.endswith("\n")
            yield Line(number, start, text.rstrip("\r\n") if terminated else text.rstrip("\r"), terminated)

    def _wide_lines(self) -> Iterator[Line | Quarantined]:
        unit = 2 if self.encoding == "utf-16" else 4
        cap_chars = max(1, self.max_record_bytes // unit)
        reader = io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")
        offset = unit  # the BOM
        number = 0
        try:
            while True:
                number += 1
                try:
                    text = reader.readline(cap_chars + 1)
                except UnicodeDecodeError:
                    yield bad_encoding(self.base, number, offset, self.encoding.upper())
                    return
                if not text:
                    return
                start = offset
                offset += len(text.encode(self.encoding + "-le"))
                if len(text) > cap_chars and not text.endswith("\n"):
                    while text and not text.endswith("\n"):
                        text = reader.readline(cap_chars)
                        offset += len(text.encode(self.encoding + "-le"))
                    yield oversized(self.base, number, start, offset - start, self.max_record_bytes)
                    continue
                terminated = text.endswith("\n")
                yield Line(number, start, text.rstrip("\r\n"), terminated)
        finally:
            reader.detach()

    def chunks(self, size: int = 1 << 16) -> Iterator[tuple[str, int] | Quarantined]:
        """Decoded text in pieces of about ``size`` characters, each with its starting byte offset."""
        if self._wide:
            reader = io.TextIOWrapper(self.stream, encoding=self.encoding, newline="")
            offset = 2 if self.encoding == "utf-16" else 4
            try:
                while True:
                    try:
                        text = reader.read(size)
                    except UnicodeDecodeError:
                        yield bad_encoding(self.base, 0, offset, self.encoding.upper())
                        return
                    if not text:
                        return
                    yield text, offset
                    offset += len(text.encode(self.encoding + "-le"))
            finally:
                reader.detach()
        decoder = codecs.getincrementaldecoder(self.encoding)()
        offset = 0
        while True:
            raw = self.stream.read(size)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as exc:
                yield bad_encoding(self.base, 0, max(0, offset + exc.start - len(decoder.getstate()[0])), "UTF-8")
                return
            if text:
                yield text, offset
            if not raw:
                return
            offset += len(raw)

    def byte_chunks(self, size: int = 1 << 16) -> Iterator[tuple[bytes, int] | Quarantined]:
        """UTF-8 bytes in pieces, each with its byte offset (re-encoded, so approximate, for UTF-16/32)."""
        if self._wide:
            for item in self.chunks(size):
                yield item if isinstance(item, Quarantined) else (item[0].encode("utf-8"), item[1])
            return
        offset = len(codecs.BOM_UTF8) if self.encoding == "utf-8-sig" else 0
        if offset:
            self.stream.read(offset)
        while raw := self.stream.read(size):
            yield raw, offset
            offset += len(raw)
