"""Parsers: raw objects in tenant storage -> ``Document`` / ``Quarantined``, streaming, bounded memory.

    from services.curation.parsers import ParserConfig, parse_object
    for item in parse_object(storage, "tickets/2024-01.jsonl", config=ParserConfig(), root="tickets/"):
        ...

One module per format (jsonl, json_document, csv, markdown, html, pdf, code, text,
archive); detect.py picks one, dispatch.py runs it and turns every bad input into a
``Quarantined`` with a code and a reason.
"""

from services.curation.parsers.config import ParserConfig
from services.curation.parsers.dispatch import parse_object, rejected_object

__all__ = ["ParserConfig", "parse_object", "rejected_object"]
