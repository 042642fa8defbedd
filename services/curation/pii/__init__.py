"""The PII stage of curation: detect and redact, tag or drop personal data and secrets.

Detection is Presidio (pattern recognizers with checksums, ``phonenumbers``, spaCy NER
for names) plus the project's secret recognizers, all offline. See docs/pii.md.

    redactor = PiiRedactor(PiiConfig(mode="redact", pseudonymize=True, salt=dataset_salt))
    for result in redactor.redact_many(texts):
        ...
"""

from __future__ import annotations

from services.curation.pii.config import STRUCTURED_ENTITIES, SUPPORTED_ENTITIES, PiiConfig
from services.curation.pii.redact import Detection, PiiRedactor, PiiResult, resolve_overlaps

__all__ = ["STRUCTURED_ENTITIES", "SUPPORTED_ENTITIES", "Detection", "PiiConfig", "PiiRedactor", "PiiResult",
           "resolve_overlaps"]
