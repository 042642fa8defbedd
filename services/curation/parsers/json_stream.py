"""Split a JSON document into its records without loading it: a byte-level scanner.

Records are the elements of a top-level array (``[{...}, {...}]``), or of the first
array under a wrapper key of a top-level object (``{"tickets": [...], "next_page": ...}``);
any other top-level object is one record. Each record's raw bytes (at most
``max_bytes``; larger ones are skipped and reported) are handed to ``json.loads`` by
the caller. Structural characters are ASCII, so scanning UTF-8 bytes is exact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

WRAPPER_KEYS = frozenset({b"tickets", b"records", b"items", b"data", b"results", b"examples", b"conversations"})
MAX_DEPTH = 512
_TOKEN = re.compile(rb'[\[\]{}",:]|[^\s\[\]{}",:]+')
_IN_STRING = re.compile(rb'["\\]')
_OPEN, _CLOSE = b"[{", b"]}"
_PAIR = {ord("]"): ord("["), ord("}"): ord("{")}


@dataclass(frozen=True)
class JsonRecord:
    raw: bytes
    offset: int   # byte offset of its first byte
    line: int     # 1-based line of its first byte


@dataclass(frozen=True)
class JsonProblem:
    code: str     # oversized_record, truncated_json, invalid_json, too_deeply_nested, empty_file
    offset: int
    line: int
    size: int = 0
    detail: str = ""  # for invalid_json: unbalanced, scalar, trailing


class _Capture:
    """Bytes of one value, copied chunk by chunk; dropped (size still counted) once over the limit."""

    def __init__(self, mark: int, offset: int, line: int, limit: int) -> None:
        self.buf: bytearray | None = bytearray()
        self.mark = mark
        self.offset = offset
        self.line = line
        self.limit = limit
        self.size = 0
        self.too_deep = False

    def take(self, chunk: bytes, end: int) -> None:
        self.size += end - self.mark
        if self.buf is not None:
            if self.size > self.limit:
                self.buf = None
            else:
                self.buf += chunk[self.mark:end]
        self.mark = 0

    def result(self) -> JsonRecord | JsonProblem:
        if self.too_deep:
            return JsonProblem("too_deeply_nested", self.offset, self.line, self.size)
        if self.buf is None:
            return JsonProblem("oversized_record", self.offset, self.line, self.size)
        return JsonRecord(bytes(self.buf).rstrip(), self.offset, self.line)


class JsonScanner:
    """Feed byte chunks in order; get records as they complete. ``failed`` is set after a fatal problem."""

    def __init__(self, max_bytes: int, start_offset: int = 0) -> None:
        self.max_bytes = max_bytes
        self.failed = False
        self._stack = bytearray()
        self._in_string = False
        self._escaped = False
        self._top = ""                    # "", "array", "object", "done"
        self._target: int | None = None   # depth whose values are records
        self._record: _Capture | None = None
        self._whole: _Capture | None = None
        self._key: bytearray | None = None
        self._expect_key = False
        self._last_string = b""
        self._value_key = b""
        self._wrapper_seen = False
        self._offset = start_offset       # of the chunk being fed
        self._lines = 0                   # newlines before it
        self._top_offset = start_offset
        self._excess = 0                  # open brackets beyond MAX_DEPTH: counted, not kept or checked

    def _position(self, chunk: bytes, index: int) -> tuple[int, int]:
        return self._offset + index, self._lines + chunk.count(b"\n", 0, index) + 1

    def _fail(self, code: str, chunk: bytes, index: int, detail: str = "") -> JsonProblem:
        self.failed = True
        offset, line = self._position(chunk, index)
        return JsonProblem(code, offset, line, detail=detail)

    def feed(self, chunk: bytes) -> Iterator[JsonRecord | JsonProblem]:
        if self.failed:
            return
        i, n = 0, len(chunk)
        while i < n:
            if self._in_string:
                i = self._scan_string(chunk, i)
                continue
            m = _TOKEN.search(chunk, i)
            if m is None:
                break
            j, token = m.start(), m.group()
            i = m.end()
            depth = len(self._stack)
            if (self._target == depth and self._record is None and token not in (b",", b"]")):
                offset, line = self._position(chunk, j)
                self._record = _Capture(j, offset, line, self.max_bytes)
            c = token[0]
            if c == ord('"'):
                self._in_string = True
                self._key = bytearray() if self._top == "object" and depth == 1 and self._expect_key else None
                i = j + 1
            elif c in _OPEN:
                problem = self._open(c, chunk, j, depth)
                if problem:
                    yield problem
                    return
            elif c in _CLOSE and self._excess:
                self._excess -= 1
            elif c in _CLOSE:
                if not self._stack or self._stack[-1] != _PAIR[c]:
                    yield self._fail("invalid_json", chunk, j, "unbalanced")
                    return
                if self._target == depth and self._record is not None:
                    yield self._end_record(chunk, j)
                if self._target == depth:
                    self._target = None
                self._stack.pop()
                if not self._stack:
                    self._top = "done"
                    if self._whole is not None:
                        self._whole.take(chunk, j + 1)
                        yield self._whole.result()
                        self._whole = None
            elif c == ord(","):
                if self._target == depth and self._record is not None:
                    yield self._end_record(chunk, j)
                if self._top == "object" and depth == 1:
                    self._expect_key, self._value_key = True, b""
            elif c == ord(":"):
                if self._top == "object" and depth == 1:
                    self._expect_key, self._value_key = False, self._last_string
            elif depth == 0:  # a bare scalar at the top, or data after the document
                yield self._fail("invalid_json", chunk, j, "trailing" if self._top == "done" else "scalar")
                return
        for capture in (self._record, self._whole):
            if capture is not None:
                capture.take(chunk, n)
        self._offset += n
        self._lines += chunk.count(b"\n")

    def _scan_string(self, chunk: bytes, i: int) -> int:
        if self._escaped:
            self._escaped = False
            if self._key is not None:
                self._key += chunk[i:i + 1]
            return i + 1
        m = _IN_STRING.search(chunk, i)
        end = m.start() if m else len(chunk)
        if self._key is not None and len(self._key) < 256:
            self._key += chunk[i:end]
        if m is None:
            return len(chunk)
        if chunk[end] == ord("\\"):
            self._escaped = True
            if self._key is not None:
                self._key += b"\\"
            return end + 1
        self._in_string = False
        if self._key is not None:
            self._last_string, self._key, self._expect_key = bytes(self._key), None, False
        return end + 1

    def _open(self, c: int, chunk: bytes, j: int, depth: int) -> JsonProblem | None:
        if depth >= MAX_DEPTH:  # the record around it is reported, and the next one still read
            self._excess += 1
            for capture in (self._record, self._whole):
                if capture is not None:
                    capture.too_deep, capture.buf = True, None
            return None
        if depth == 0:
            if self._top == "done":
                return self._fail("invalid_json", chunk, j, "trailing")
            self._top_offset = self._offset + j
            if c == ord("["):
                self._top, self._target = "array", 1
            else:
                offset, line = self._position(chunk, j)
                self._top, self._expect_key = "object", True
                self._whole = _Capture(j, offset, line, self.max_bytes)
        elif (self._top == "object" and depth == 1 and c == ord("[") and not self._wrapper_seen
              and self._value_key in WRAPPER_KEYS):
            self._wrapper_seen, self._target, self._whole = True, 2, None
        self._stack.append(c)
        return None

    def _end_record(self, chunk: bytes, j: int) -> JsonRecord | JsonProblem:
        assert self._record is not None
        self._record.take(chunk, j)
        result = self._record.result()
        self._record = None
        return result

    def finish(self) -> Iterator[JsonProblem]:
        """Problems only visible at the end: nothing at all, or a document cut off."""
        if self.failed:
            return
        if self._top == "":
            yield JsonProblem("empty_file", self._top_offset, 1)
        elif self._stack or self._excess or self._in_string:
            capture = self._record or self._whole
            offset = capture.offset if capture else self._top_offset
            line = capture.line if capture else 1
            yield JsonProblem("truncated_json", offset, line)
