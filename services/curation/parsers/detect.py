"""Which parser reads an object: magic bytes, then the extension, then the hint, then the content.

``format_hint`` (a dataset's declared format, e.g. ``jsonl``, ``tickets`` or the enum name
``DATASET_FORMAT_JSONL``) decides for files whose name does not say: no extension, or one
no parser knows. Containers (PDF, zip, gzip) are always recognised by their magic bytes.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from services.curation.parsers.code import LANGUAGES

CONTAINERS = frozenset({"pdf", "zip", "gzip"})
OFFICE = "office"  # zip-based document formats we do not read: say so instead of unpacking XML
_EXTENSIONS = {
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "csv",
    ".md": "markdown", ".markdown": "markdown", ".mdx": "markdown", ".html": "html", ".htm": "html",
    ".xhtml": "html", ".pdf": "pdf", ".txt": "text", ".text": "text", ".log": "text", ".rst": "text",
    ".zip": "zip", ".gz": "gzip", ".gzip": "gzip", ".tgz": "gzip",
    **{ext: "code" for ext in LANGUAGES},
    **{ext: OFFICE for ext in (".docx", ".xlsx", ".pptx", ".odt", ".ods", ".odp", ".epub", ".doc", ".xls",
                               ".ppt", ".jar", ".apk")},
}
_HINTS = {
    "jsonl": "jsonl", "ndjson": "jsonl", "json": "json", "tickets": "json", "tickets_json": "json", "csv": "csv",
    "tsv": "csv", "markdown": "markdown", "md": "markdown", "html": "html", "pdf": "pdf", "text": "text",
    "txt": "text", "code": "code", "source_code": "code", "zip": "zip", "gzip": "gzip",
}


def normalize_hint(hint: str) -> str:
    """A parser name for a format hint, or "" (no hint, ``mixed``, or one we do not know)."""
    return _HINTS.get(hint.strip().lower().removeprefix("dataset_format_"), "")


def extension_format(name: str) -> str | None:
    """The format the name's extension says; "" for an unknown extension, None for none."""
    suffix = PurePosixPath(name).suffix.lower()
    return _EXTENSIONS.get(suffix, "") if suffix else None


def magic_format(head: bytes) -> str | None:
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    return None


_BINARY_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"), (0, b"\xff\xd8\xff", "a JPEG image"), (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"), (0, b"II*\0", "a TIFF image"), (0, b"MM\0*", "a TIFF image"),
    (0, b"RIFF", "a RIFF media file (WebP, WAV or AVI)"), (4, b"ftyp", "an MP4 or QuickTime file"),
    (0, b"OggS", "an Ogg media file"), (0, b"fLaC", "a FLAC audio file"), (0, b"ID3", "an MP3 audio file"),
    (0, b"\x7fELF", "an ELF executable"), (0, b"\xca\xfe\xba\xbe", "a Java class or Mach-O executable"),
    (0, b"\xcf\xfa\xed\xfe", "a Mach-O executable"), (0, b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (0, b"\xfe\xed\xfa\xcf", "a Mach-O executable"), (0, b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (0, b"\0asm", "a WebAssembly module"), (0, b"SQLite format 3\0", "an SQLite database"),
    (0, b"PAR1", "a Parquet file"), (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (0, b"Rar!\x1a\x07", "a RAR archive"),
    (0, b"\xfd7zXZ\0", "an xz archive"), (0, b"\x28\xb5\x2f\xfd", "a zstd archive"),
)


def binary_kind(head: bytes) -> str | None:
    """What a well-known binary format says it is by its magic bytes ("a PNG image"), or None.

    Such an object holds no text records at all, so it is quarantined whole without reading
    further; anything else is judged line by line (textio.py).
    """
    for at, magic, kind in _BINARY_SIGNATURES:
        if head.startswith(magic, at):
            return kind
    if head.startswith(b"MZ") and b"\0" in head[:64]:
        return "a Windows executable"
    if head.startswith(b"BZh") and head[4:10] == b"1AY&SY":
        return "a bzip2 archive"
    return None


def looks_like_jsonl(head: bytes) -> bool:
    """A complete JSON object on the first line and another object starting on the next."""
    lines = [line for line in head.split(b"\n") if line.strip()]
    if len(lines) < 2 or not lines[1].lstrip().startswith(b"{"):
        return False
    try:
        return isinstance(json.loads(lines[0]), dict)
    except (ValueError, RecursionError):
        return False


def sniff_text_format(head: bytes) -> str:
    start = head.lstrip()
    if start.startswith(b"{"):
        return "jsonl" if looks_like_jsonl(head) else "json"
    if start.startswith(b"["):
        return "json"
    lowered = start[:1024].lower()
    if lowered.startswith(b"<!doctype html") or b"<html" in lowered:
        return "html"
    return "text"


def text_format(name: str, hint: str, head: bytes) -> str | None:
    """The parser for a text object, or None if neither its name nor the hint names a known format."""
    by_name = extension_format(name)
    if by_name == "json" and looks_like_jsonl(head):
        return "jsonl"
    if by_name:
        return by_name
    if hint:
        return hint
    return sniff_text_format(head) if by_name is None else None
