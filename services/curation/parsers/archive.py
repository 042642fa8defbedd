"""Archives: ``.zip`` members and ``.gz`` streams, parsed recursively, with zip-bomb guards.

Guards (ParserConfig): at most ``max_archive_members`` members; at most
``max_archive_bytes`` uncompressed bytes per top-level object (all members and
nesting levels together: a shared ``Budget``); no member expanding more than
``max_archive_ratio`` times; no nesting deeper than ``max_archive_depth``. Declared
sizes are checked before anything is inflated, and actual bytes are metered while
reading, so a forged header gains nothing. A tripped guard quarantines the archive
as ``zip_bomb`` and stops reading it.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import replace
from pathlib import PurePosixPath
from typing import Any, BinaryIO, Callable, Iterator

from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers.config import ParserConfig

RATIO_FLOOR_BYTES = 1 << 20  # members smaller than this may compress as well as they like

Parsed = Iterator[Document | Quarantined]
MemberParser = Callable[[BinaryIO, Provenance, str, int], Parsed]  # (stream, provenance, name, depth)


class ArchiveLimitExceeded(Exception):
    """A zip-bomb guard tripped; the message says which, never any content."""


class Budget:
    """Uncompressed bytes one top-level object may still produce."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def take(self, n: int) -> None:
        self.used += n
        if self.used > self.limit:
            raise ArchiveLimitExceeded(f"the archive expands past max_archive_bytes={self.limit}; it looks like a "
                                       "zip bomb (split it, or raise the limit if it is genuine)")


class _Metered(io.RawIOBase):
    """Uncompressed bytes of one member, counted against the budget and the expansion ratio."""

    def __init__(self, inner: Any, budget: Budget, compressed: int | _Counting, max_ratio: float) -> None:
        super().__init__()
        self._inner = inner
        self._budget = budget
        self._compressed = compressed
        self._max_ratio = max_ratio
        self._produced = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._inner.seekable())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        n = len(data)
        view[:n] = data
        self._produced += n
        self._budget.take(n)
        compressed = self._compressed if isinstance(self._compressed, int) else self._compressed.count
        if self._produced > RATIO_FLOOR_BYTES and self._produced > self._max_ratio * max(1, compressed):
            raise ArchiveLimitExceeded(f"a member expands more than max_archive_ratio={self._max_ratio:g} times; "
                                       "it looks like a zip bomb")
        return n


class _Counting(io.RawIOBase):
    """Compressed bytes read from the underlying stream (for the ratio of a .gz)."""

    def __init__(self, inner: BinaryIO) -> None:
        super().__init__()
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._inner.read(len(view))
        view[:len(data)] = data
        self.count += len(data)
        return len(data)


def _member(base: Provenance, name: str) -> Provenance:
    return replace(base, member=f"{base.member}!/{name}" if base.member else name)


def _bomb(provenance: Provenance, reason: str) -> Quarantined:
    return Quarantined(provenance, "zip_bomb", reason)


def _declared_bomb(infos: list[zipfile.ZipInfo], base: Provenance, config: ParserConfig,
                   budget: Budget) -> Quarantined | None:
    """Refuse before inflating anything: too many members, too many bytes, or a member too compressed."""
    if len(infos) > config.max_archive_members:
        return _bomb(base, f"the zip has {len(infos)} members, above max_archive_members="
                           f"{config.max_archive_members}; split it")
    declared = sum(info.file_size for info in infos)
    if declared > budget.remaining:
        return _bomb(base, f"the zip declares {declared} uncompressed bytes, above max_archive_bytes="
                           f"{budget.limit}; it looks like a zip bomb (split it, or raise the limit if genuine)")
    for info in infos:
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > RATIO_FLOOR_BYTES and ratio > config.max_archive_ratio:
            return _bomb(_member(base, info.filename),
                         f"a member expands {ratio:.0f} times ({info.compress_size} -> {info.file_size} bytes), above "
                         f"max_archive_ratio={config.max_archive_ratio:g}; it looks like a zip bomb")
    return None


def parse_zip(stream: BinaryIO, base: Provenance, config: ParserConfig, budget: Budget, depth: int,
              parse_member: MemberParser) -> Parsed:
    try:
        archive = zipfile.ZipFile(stream)
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield Quarantined(base, "malformed_archive", f"the zip file cannot be read ({type(exc).__name__}); "
                                                     "re-create it")
        return
    with archive:
        refused = _declared_bomb(infos, base, config, budget)
        if refused:
            yield refused
            return
        for info in infos:
            provenance = _member(base, info.filename)
            if info.flag_bits & 0x1:
                yield Quarantined(provenance, "encrypted_archive", "the member is password-protected; "
                                                                   "upload it unencrypted")
                continue
            try:
                with archive.open(info) as raw:
                    metered = _Metered(raw, budget, info.compress_size, config.max_archive_ratio)
                    yield from parse_member(io.BufferedReader(metered, 1 << 16), provenance, info.filename,
                                            depth + 1)
            except ArchiveLimitExceeded as exc:
                yield _bomb(provenance, str(exc))
                return
            except (zipfile.BadZipFile, NotImplementedError, OSError, EOFError) as exc:
                yield Quarantined(provenance, "malformed_archive",
                                  f"the member cannot be read ({type(exc).__name__}); re-create the zip")


def inner_name(name: str) -> str:
    """The name of what a .gz holds: ``a.jsonl.gz`` -> ``a.jsonl``, ``a.tgz`` -> ``a.tar``."""
    path = PurePosixPath(name)
    if path.suffix.lower() == ".tgz":
        return path.stem + ".tar"
    return path.stem if path.suffix.lower() in (".gz", ".gzip") else path.name


def parse_gzip(stream: BinaryIO, base: Provenance, name: str, config: ParserConfig, budget: Budget, depth: int,
               parse_member: MemberParser) -> Parsed:
    inner = inner_name(name)
    provenance = _member(base, inner)
    counting = _Counting(stream)
    with gzip.GzipFile(fileobj=counting, mode="rb") as unzipped:
        metered = _Metered(unzipped, budget, counting, config.max_archive_ratio)
        try:
            yield from parse_member(io.BufferedReader(metered, 1 << 16), provenance, inner, depth + 1)
        except ArchiveLimitExceeded as exc:
            yield _bomb(provenance, str(exc))
