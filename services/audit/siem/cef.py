"""Audit records as ArcSight Common Event Format (CEF) 0 lines.

``CEF:0|privtune|privtune|<version>|<kind>|<name>|<severity>|<extensions>``

Header fields escape ``\\`` and ``|``; a header cannot hold a line break, so CR and LF
become spaces there. Extension values escape ``\\``, ``=``, CR (``\\r``) and LF (``\\n``);
``|`` is literal in extensions. Other control characters (NUL, ESC, ...) have no CEF
escape and many receivers mangle them, so they become U+FFFD: CEF is for people and
correlation rules; the exact, hash-checkable record is in the OCSF or JSON export.

Extensions: ``rt`` (event time, Unix ms), ``suser`` (actor), ``outcome``, ``act`` (kind),
``request`` (the gRPC method, when recorded), ``externalId`` (record id), and labelled
custom strings: ``cs1`` tenant, ``cs2`` recordId, ``cs3`` correlationId, ``cs4`` hash,
``cs5`` resource, ``cs6`` attributes (JSON pairs), ``flexString1`` prevHash, and the
number ``cn1`` seq.
"""

from __future__ import annotations

import json
import re

from services.audit.chain import AuditRecord
from services.audit.siem.ocsf import product_version, severity_id

VENDOR = "privtune"
PRODUCT = "privtune"

_NAMES = {
    "rpc.allowed": "API call allowed",
    "rpc.denied": "API call denied",
    "auth.failed": "Authentication failed",
    "auth.succeeded": "Authentication succeeded",
    "break_glass.used": "Break-glass access used",
}
# OCSF severity_id -> CEF 0..10 (0-3 low, 4-6 medium, 7-8 high, 9-10 very high)
_CEF_SEVERITY = {0: 0, 1: 1, 2: 3, 3: 5, 4: 8, 5: 10, 6: 10, 99: 5}
_HEADER_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # CR, LF are escaped before this runs
_EXTENSION_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})


def to_cef(record: AuditRecord) -> str:
    """One CEF line (no trailing newline) for ``record``."""
    header = [
        "CEF:0",
        escape_header(VENDOR),
        escape_header(PRODUCT),
        escape_header(product_version()),
        escape_header(record.kind),
        escape_header(event_name(record.kind)),
        str(_CEF_SEVERITY[severity_id(record)]),
    ]
    method = next((v for k, v in record.attributes if k == "method"), "")
    pairs: list[tuple[str, str]] = [
        ("rt", str(record.time_ms)),
        ("suser", record.actor),
        ("outcome", record.outcome),
        ("act", record.kind),
        ("request", method),
        ("externalId", record.record_id),
        ("cs1Label", "tenant"), ("cs1", record.tenant_id),
        ("cs2Label", "recordId"), ("cs2", record.record_id),
        ("cs3Label", "correlationId"), ("cs3", record.correlation_id),
        ("cs4Label", "hash"), ("cs4", record.hash),
        ("cs5Label", "resource"), ("cs5", record.resource),
        ("cs6Label", "attributes"),
        ("cs6", json.dumps([list(p) for p in record.attributes], ensure_ascii=False, separators=(",", ":"))),
        ("flexString1Label", "prevHash"), ("flexString1", record.prev_hash),
        ("cn1Label", "seq"), ("cn1", str(record.seq)),
    ]
    extension = " ".join(f"{key}={escape_extension(value)}" for key, value in pairs if value)
    return "|".join(header) + "|" + extension


def event_name(kind: str) -> str:
    """A readable name for a kind: ``model.alias_moved`` -> ``Model alias moved``."""
    if kind in _NAMES:
        return _NAMES[kind]
    text = kind.replace(".", " ").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def escape_header(value: str) -> str:
    """Escape a CEF header field (``\\`` and ``|``; line breaks become spaces)."""
    return _replace_controls(value.translate(_HEADER_ESCAPES))


def escape_extension(value: str) -> str:
    """Escape a CEF extension value (``\\``, ``=``, CR, LF)."""
    return _replace_controls(value.translate(_EXTENSION_ESCAPES))


def _replace_controls(text: str) -> str:
    """C0 and C1 control characters but tab (Unicode category Cc) become U+FFFD."""
    if not _CONTROLS.search(text):
        return text
    return _CONTROLS.sub("\ufffd", text)
