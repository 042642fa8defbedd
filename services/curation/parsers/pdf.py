"""PDF: the text of each page (pypdf), one document per page with ``provenance.page``.

Encrypted PDFs that need a password, and files pypdf cannot read, are quarantined
as ``malformed_pdf``; pages without extractable text (scans) as ``empty_page``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import BinaryIO, Iterator

from services.curation.documents import Document, Provenance, Quarantined
from services.curation.parsers.config import ParserConfig

log = logging.getLogger(__name__)


def _malformed(base: Provenance, what: str) -> Quarantined:
    return Quarantined(base, "malformed_pdf", f"{what}; open it in a PDF tool and re-save or export it")


def parse(stream: BinaryIO, base: Provenance, config: ParserConfig) -> Iterator[Document | Quarantined]:
    from pypdf import PdfReader

    try:
        reader = PdfReader(stream)
        if reader.is_encrypted and not reader.decrypt(""):
            yield Quarantined(base, "malformed_pdf", "the PDF is encrypted with a password; upload an unencrypted copy")
            return
        count = len(reader.pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on broken files
        log.info("unreadable PDF %s (%s)", base.source, type(exc).__name__)
        yield _malformed(base, f"the PDF cannot be read ({type(exc).__name__})")
        return
    for number in range(1, count + 1):
        provenance = replace(base, page=number)
        try:
            text = reader.pages[number - 1].extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one bad page must not lose the others
            yield _malformed(provenance, f"page {number} cannot be read ({type(exc).__name__})")
            continue
        size = len(text.encode("utf-8", "replace"))
        if size > config.max_record_bytes:
            yield Quarantined(provenance, "oversized_record", f"page {number} has {size} bytes of text, above "
                                                              f"max_record_bytes={config.max_record_bytes}")
        elif not text.strip():
            yield Quarantined(provenance, "empty_page",
                              f"page {number} has no extractable text (a scanned image?); OCR the PDF first")
        else:
            yield Document(text=text.strip(), provenance=provenance, kind="text", fields={}, format="pdf")
