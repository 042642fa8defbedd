"""The PII stage of curation: detect PII and replace it with surrogates, redact, tag or drop it.

Detection is Presidio (pattern recognizers with checksums, ``phonenumbers``, spaCy NER
for names) plus the project's secret recognizers, all offline. See docs/pii.md.

    redactor = PiiRedactor(PiiConfig(salt=dataset_version_salt))   # mode="surrogate": realistic fakes
    for result in redactor.redact_many(texts):
        ...

The pipeline runs it in worker processes (:mod:`services.curation.pii.pool`). Importing
this package is cheap: the names that need spaCy (``PiiRedactor`` and friends, from
:mod:`services.curation.pii.redact`) are imported on first access, so a process that
only configures the stage never loads spaCy (or, through it, torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from services.curation.pii.config import STRUCTURED_ENTITIES, SUPPORTED_ENTITIES, PiiConfig

if TYPE_CHECKING:
    from services.curation.pii.redact import Detection, PiiRedactor, PiiResult, resolve_overlaps

_LAZY = {"Detection": "redact", "PiiRedactor": "redact", "PiiResult": "redact", "resolve_overlaps": "redact"}

__all__ = ["STRUCTURED_ENTITIES", "SUPPORTED_ENTITIES", "Detection", "PiiConfig", "PiiRedactor", "PiiResult",
           "resolve_overlaps"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
