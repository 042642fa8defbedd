"""PII detection and treatment: detect PII and replace it with surrogates, redact, tag or drop it.

Shared by curation (the PII stage of a recipe) and evaluation (PII leakage in generations),
so both find the same things.

Detection is Presidio (pattern recognizers with checksums, ``phonenumbers``, spaCy NER
for names) plus the project's secret recognizers, all offline. See docs/pii.md.

    redactor = PiiRedactor(PiiConfig(salt=dataset_version_salt))   # mode="surrogate": realistic fakes
    for result in redactor.redact_many(texts):
        ...

The pipeline runs it in worker processes (:mod:`services.common.pii.pool`). Importing
this package is cheap: the names that need spaCy (``PiiRedactor`` and friends, from
:mod:`services.common.pii.redact`) are imported on first access, so a process that
only configures the stage never loads spaCy (or, through it, torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from services.common.pii.config import STRUCTURED_ENTITIES, SUPPORTED_ENTITIES, PiiConfig

if TYPE_CHECKING:
    from services.common.pii.redact import Detection, PiiRedactor, PiiResult, resolve_overlaps

_LAZY = {"Detection": "redact", "PiiRedactor": "redact", "PiiResult": "redact", "resolve_overlaps": "redact"}

__all__ = ["STRUCTURED_ENTITIES", "SUPPORTED_ENTITIES", "Detection", "PiiConfig", "PiiRedactor", "PiiResult",
           "resolve_overlaps"]


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
