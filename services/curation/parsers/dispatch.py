"""Read one object from tenant storage into documents, whatever it holds.

Every problem with the input becomes a ``Quarantined`` item (object key, member, line,
byte offset, a code and an actionable reason; never content) and parsing goes on with
the next record. Only storage failures (``PrivtuneError``) propagate.
"""

from __future__ import annotations

import gzip
import logging
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Callable, Iterator

from services.common.errors import NotFound, PermissionDenied, PrivtuneError
from services.common.storage import RejectedEntry, TenantStorage
from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers import archive, code, csv, html, json_document, jsonl, markdown, pdf, text
from services.curation.parsers.config import ParserConfig
from services.curation.parsers.detect import (
    CONTAINERS,
    OFFICE,
    binary_kind,
    extension_format,
    magic_format,
    normalize_hint,
    text_format,
)
from services.curation.parsers.textio import (
    SNIFF_BYTES,
    TextSource,
    binary_object,
    bom_encoding,
    looks_binary,
    looks_like_utf16,
)

log = logging.getLogger(__name__)

Parsed = Iterator[Document | Quarantined]
TEXT_PARSERS: dict[str, Callable[[TextSource, ParserConfig], Parsed]] = {
    "jsonl": jsonl.parse, "json": json_document.parse, "csv": csv.parse, "markdown": markdown.parse,
    "html": html.parse, "text": text.parse, "code": code.parse,
}
_WHOLE_DOCUMENT_FORMATS = frozenset({"json", "html"})  # not line oriented: no per-line binary check
_CORRUPT_COMPRESSION = (zipfile.BadZipFile, zlib.error, EOFError, gzip.BadGzipFile)


@dataclass(frozen=True)
class _Job:
    config: ParserConfig
    hint: str
    budget: archive.Budget


def relative_source(key: str, root: str) -> str:
    """The key relative to the dataset's root (its name, for a single-object dataset)."""
    if root and root.endswith("/") and key.startswith(root):
        return key[len(root):]
    if root and key == root:
        return PurePosixPath(key).name
    return key


def rejected_object(entry: RejectedEntry, root: str = "") -> Quarantined:
    """What storage listed but will not open (a symlink leading out, a pipe), as a quarantined input."""
    return Quarantined(Provenance(source=relative_source(entry.key, root)), entry.code, entry.reason)


def parse_object(storage: TenantStorage, key: str, format_hint: str = "", config: ParserConfig | None = None,
                 root: str = "") -> Parsed:
    """Documents and quarantined inputs of one object, streamed with bounded memory.

    Args:
        storage: the tenant's storage.
        key: the object's key in it.
        format_hint: the format of objects whose name does not say (``jsonl``, ``tickets``, ...).
        config: parser limits (defaults: ``ParserConfig()``).
        root: the dataset's prefix; provenance ``source`` is the key relative to it.
    """
    config = config or ParserConfig()
    base = Provenance(source=relative_source(key, root))
    try:
        stream = storage.open(key)
    except NotFound:
        yield Quarantined(base, "missing_object", "the object was deleted after the dataset was listed; "
                                                  "re-upload it or re-register the dataset")
        return
    except PermissionDenied:   # replaced by a symlink after the listing: never followed, reported like one
        yield Quarantined(base, "outside_boundary", "the object became a symlink after the dataset was listed and "
                                                    "was not read; store the data itself inside the tenant's folder")
        return
    job = _Job(config, normalize_hint(format_hint), archive.Budget(config.max_archive_bytes))
    with stream:
        yield from _parse_stream(job, stream, base, PurePosixPath(key).name, 0)


def _head(stream: BinaryIO) -> bytes:
    """The first bytes, without consuming them (every stream we parse is buffered or seekable)."""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        return bytes(peek(SNIFF_BYTES)[:SNIFF_BYTES])
    start = stream.tell()
    head = stream.read(SNIFF_BYTES)
    stream.seek(start)
    return head


def _parse_stream(job: _Job, stream: BinaryIO, base: Provenance, name: str, depth: int) -> Parsed:
    produced = 0
    try:
        for item in _route(job, stream, base, name, depth):
            produced += 1
            yield item
    except (archive.ArchiveLimitExceeded, PrivtuneError):
        raise
    except _CORRUPT_COMPRESSION as exc:
        produced += 1
        yield Quarantined(base, "malformed_archive", f"the compressed data is corrupt or cut off "
                                                     f"({type(exc).__name__}); re-create the file")
    except Exception as exc:  # noqa: BLE001 - a parser bug or an input we did not foresee: report, go on
        log.warning("parser failed on %s%s (%s)", base.source, f" member {base.member}" if base.member else "",
                    type(exc).__name__)
        produced += 1
        yield Quarantined(base, "parser_error", f"the parser failed on this object ({type(exc).__name__}); "
                                                "report it with the object key")
    if not produced:
        yield Quarantined(base, "no_content", "the object has no text to train on (only blank lines, headings "
                                              "or markup); check the export")


def _route(job: _Job, stream: BinaryIO, base: Provenance, name: str, depth: int) -> Parsed:
    head = _head(stream)
    if not head:
        yield Quarantined(base, "empty_file", "the object is empty (0 bytes); upload it again")
        return
    by_name = extension_format(name)
    if by_name == OFFICE:
        yield Quarantined(base, "unsupported_format", f"{PurePosixPath(name).suffix} documents are not read; "
                                                      "export them to PDF, CSV or plain text")
        return
    magic = magic_format(head)
    claimed = by_name if by_name in CONTAINERS else (job.hint if job.hint in CONTAINERS and not by_name else None)
    if magic or claimed:
        yield from _container(job, stream, base, name, depth, magic, claimed)
        return
    encoding = bom_encoding(head)
    if encoding is None and (why := _binary_reason(head)):
        yield Quarantined(base, "binary_file", why)
        return
    fmt = text_format(name, job.hint, head)
    if fmt is None:
        if encoding is None and looks_binary(head):
            yield binary_object(base)
        else:
            yield Quarantined(base, "unsupported_format", f"no parser reads {PurePosixPath(name).suffix} files; "
                                                          "convert it or set the dataset's format hint")
        return
    if encoding is None and fmt in _WHOLE_DOCUMENT_FORMATS and looks_binary(head) and \
            head.lstrip()[:1] not in (b"{", b"[", b"<"):
        yield binary_object(base)  # no JSON or HTML document starts like this
        return
    encoding = encoding or "utf-8"
    yield from TEXT_PARSERS[fmt](TextSource(stream, encoding, base, name, job.config.max_record_bytes), job.config)


def _binary_reason(head: bytes) -> str | None:
    """Why the object is binary as a whole, from its first bytes alone; None: judge it line by line.

    Only certainties decide here (a known binary format, UTF-16 without a byte-order mark):
    a NUL byte or a bad UTF-8 sequence in the first 8 KB says nothing about the records after it.
    """
    kind = binary_kind(head)
    if kind:
        return f"the object is {kind}, not text; remove it from the dataset"
    if looks_like_utf16(head):
        return ("the object looks like UTF-16 text without a byte-order mark; re-save it as UTF-8 "
                "(or as UTF-16 with a byte-order mark)")
    return None


def _container(job: _Job, stream: BinaryIO, base: Provenance, name: str, depth: int, magic: str | None,
               claimed: str | None) -> Parsed:
    if claimed and magic != claimed:
        code = "malformed_pdf" if claimed == "pdf" else "malformed_archive"
        yield Quarantined(base, code, f"the object is named or declared {claimed} but does not start like one "
                                      "(corrupt or mislabelled); re-export it")
        return
    if magic == "pdf":
        yield from pdf.parse(stream, base, job.config)
        return
    if depth > job.config.max_archive_depth:
        yield Quarantined(base, "zip_bomb", f"archives are nested more than max_archive_depth="
                                            f"{job.config.max_archive_depth} deep; unpack them first")
        return

    def member(member_stream: BinaryIO, provenance: Provenance, member_name: str, member_depth: int) -> Parsed:
        return _parse_stream(job, member_stream, provenance, member_name, member_depth)

    if magic == "zip":
        yield from archive.parse_zip(stream, base, job.config, job.budget, depth, member)
    else:
        yield from archive.parse_gzip(stream, base, name, job.config, job.budget, depth, member)
