"""Bytes to text with bounded memory: encoding and binary checks, lines, chunks.

Nothing here holds more than one record (``max_record_bytes``) or one chunk: a 100 MB
line is skipped in slices and reported, never read whole. Problems come out as
``Quarantined`` items (with line and byte offset, never content) in the stream.

Binary and encoding checks are made per line, never per file: one line with a NUL byte
or a Latin-1 accent is quarantined on its own (``binary_record`` / ``bad_encoding``) and
the lines around it are still read, wherever in the file it is. Consecutive binary lines
are reported as one span; an object whose every line is binary is one ``binary_file``.
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
_ANY_CONTROL = bytes(range(33)) + b"\x7f"  # control bytes and the space
_MAX_CONTROL_RATIO = 0.05


def bom_encoding(head: bytes) -> str | None:
    """The encoding announced by a byte-order mark, if any."""
    return next((enc for bom, enc in _BOMS if head.startswith(bom)), None)


def looks_binary(data: bytes) -> bool:
    """NUL bytes, or more than 5% control characters: not text (a whole head, or one line of it)."""
    if b"\0" in data:
        return True
    control = len(data) - len(data.translate(None, _CONTROL))
    return control > _MAX_CONTROL_RATIO * len(data)


def binary_line(raw: bytes) -> bool:
    """A line that is not text: ``looks_binary``, or nothing but control bytes (a lone backspace or ESC)."""
    if looks_binary(raw):
        return True
    if raw and 0x20 < raw[0] != 0x7F:  # starts with a visible byte: the usual case, decided without a copy
        return False
    return bool(raw.strip()) and not raw.translate(None, _ANY_CONTROL)


def looks_like_utf16(head: bytes) -> bool:
    """Mostly-ASCII UTF-16 without a byte-order mark: NUL in nearly every other byte, and only those."""
    pairs = len(head) // 2
    if pairs < 2:
        return False
    nuls = sorted((head[0:pairs * 2:2].count(0), head[1:pairs * 2:2].count(0)))
    return nuls[1] >= 0.3 * pairs and nuls[0] <= 0.05 * pairs


def binary_object(base: Provenance) -> Quarantined:
    """The whole object is binary: no line of it is text."""
    return Quarantined(base, "binary_file", "the object is binary (NUL or control bytes on every line), not text; "
                                            "remove it (UTF-16 without a byte-order mark also looks like this)")


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


@dataclass
class _BinaryRun:
    """Consecutive binary lines (blank lines between them included), reported as one span."""

    first: int
    offset: int
    last: int
    end: int

    def quarantined(self, base: Provenance) -> Quarantined:
        provenance = replace(base, line=self.first, offset=self.offset)
        if self.first == self.last:
            return Quarantined(provenance, "binary_record",
                               f"line {self.first} (byte offset {self.offset}) holds NUL or control bytes, not text; "
                               "it was left out: remove it or re-export the file")
        return Quarantined(provenance, "binary_record",
                           f"lines {self.first}-{self.last} (byte offsets {self.offset}-{self.end - 1}) hold binary "
                           "data (NUL or control bytes), not text; they were left out: remove them or re-export "
                           "the file")


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
        run: _BinaryRun | None = None
        text_seen = False  # a non-blank line that is not binary (read, or quarantined for another reason)
        while raw := self.stream.readline(cap + 1):
            number += 1
            start = offset
            offset += len(raw)
            cut = len(raw) > cap and not raw.endswith(b"\n")
            if cut:
                tail = raw
                while tail and not tail.endswith(b"\n"):  # skip the rest of the line in slices
                    tail = self.stream.readline(cap)
                    offset += len(tail)
            if binary_line(raw.rstrip(b"\r\n")):
                if run is None:
                    run = _BinaryRun(number, start, number, offset)
                else:
                    run.last, run.end = number, offset
                continue
            if run is not None and not raw.strip():
                continue  # a blank line amid binary data is part of it
            if run is not None:
                yield run.quarantined(self.base)
                run = None
            text_seen = text_seen or bool(raw.strip())
            if cut:
                yield oversized(self.base, number, start, offset - start, cap)
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield bad_encoding(self.base, number, start + exc.start, "UTF-8")
                continue
            terminated = text.endswith("\n")
            yield Line(number, start, text.rstrip("\r\n") if terminated else text.rstrip("\r"), terminated)
        if run is not None:
            yield run.quarantined(self.base) if text_seen else binary_object(self.base)

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
                if binary_line(text.rstrip("\r\n").encode("utf-8")):
                    yield _BinaryRun(number, start, number, offset).quarantined(self.base)
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
        yield from self._utf8_chunks(size)

    def _utf8_chunks(self, size: int) -> Iterator[tuple[str, int] | Quarantined]:
        """UTF-8 text in pieces; invalid sequences are left out, counted and reported once, at the end."""
        offset = len(codecs.BOM_UTF8) if self.encoding == "utf-8-sig" else 0  # of pending[0]
        if offset:
            self.stream.read(offset)
        pending = b""
        first_bad, bad = 0, 0
        while True:
            raw = self.stream.read(size)
            data = memoryview(pending + raw)
            pieces: list[str] = []
            used = 0
            while True:
                try:
                    text, n = codecs.utf_8_decode(data[used:], "strict", not raw)
                except UnicodeDecodeError as exc:
                    pieces.append(codecs.utf_8_decode(data[used:used + exc.start], "strict", True)[0])
                    first_bad, bad = first_bad if bad else offset + used + exc.start, bad + 1
                    used += exc.end
                    continue
                pieces.append(text)
                used += n
                break
            text = "".join(pieces)
            if text:
                yield text, offset
            pending = bytes(data[used:])
            offset += used
            if not raw:
                break
        if bad:
            more = f" and {bad - 1} more places" if bad > 1 else ""
            yield Quarantined(replace(self.base, offset=first_bad), "bad_encoding",
                              f"not valid UTF-8 at byte offset {first_bad}{more}; those bytes were left out of the "
                              "text: re-save the file as UTF-8")

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
