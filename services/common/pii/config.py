"""What the PII stage of a curation recipe is configured with."""

from __future__ import annotations

from typing import Literal

import pydantic

from services.common.limits import quote

# Types with a checkable structure (pattern + checksum/validator). The rest are NER based.
STRUCTURED_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
                       "SECRET")
SUPPORTED_ENTITIES = (*STRUCTURED_ENTITIES, "PERSON")


class PiiConfig(pydantic.BaseModel):
    """How to find and treat PII in one dataset version."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    mode: Literal["surrogate", "redact", "tag", "drop_record"] = "surrogate"
    """``surrogate``: replace each entity with a realistic fake of the same type and format,
    consistent per salt (the default: every recipe builds SFT or preference examples, and a
    model tuned on ``<PERSON>`` answers with placeholders); ``redact``: replace it with
    ``<TYPE>`` (or a pseudonym); ``tag``: wrap it in ``<TYPE>...</TYPE>`` for human review
    sets; ``drop_record``: drop any record with PII."""
    entities: list[str] = pydantic.Field(default_factory=lambda: list(SUPPORTED_ENTITIES))
    """Entity types to look for; a subset of ``SUPPORTED_ENTITIES``."""
    score_threshold: float = pydantic.Field(default=0.4, ge=0.0, le=1.0)
    """Minimum Presidio score. 0.4 keeps phone numbers (0.4 without a context word) and
    bare 9-digit SSNs only when "SSN"/"social security" precedes them."""
    pseudonymize: bool = False
    """In ``redact`` mode, replace with ``<TYPE_hmac>`` so equal values map to equal tokens.
    Set without a ``mode`` it selects ``redact`` (what it meant before ``surrogate`` became the
    default); with ``mode="surrogate"`` it is refused, as surrogates are consistent already."""
    salt: str = pydantic.Field(default="", repr=False, exclude=True)
    """Per-dataset-version secret salt for surrogates and pseudonyms, required by ``PiiRedactor``
    in ``surrogate`` mode and when ``pseudonymize``.
    Left out of ``repr`` and of ``model_dump`` (so of config JSON and its hash): it is a secret,
    normally derived from a KMS key per dataset by the caller and set with ``model_copy``."""

    @pydantic.field_validator("entities")
    @classmethod
    def _known_entities(cls, entities: list[str]) -> list[str]:
        unknown = sorted(set(entities) - set(SUPPORTED_ENTITIES))
        if unknown:
            shown = ", ".join(quote(e, 32) for e in unknown[:3]) + (f" and {len(unknown) - 3} more"
                                                                     if len(unknown) > 3 else "")
            raise ValueError(f"unknown PII entity types {shown}; supported: {', '.join(SUPPORTED_ENTITIES)}")
        if not entities:
            raise ValueError(f"entities is empty; list at least one of {list(SUPPORTED_ENTITIES)}")
        return entities

    @pydantic.model_validator(mode="before")
    @classmethod
    def _pseudonyms_mean_redact(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("pseudonymize") and "mode" not in data:
            return {**data, "mode": "redact"}
        return data

    @pydantic.model_validator(mode="after")
    def _pseudonyms_only_when_redacting(self) -> PiiConfig:
        if self.pseudonymize and self.mode == "surrogate":
            raise ValueError("pseudonymize applies to mode 'redact' only (it replaces values with <TYPE_hash> "
                             "tokens); surrogates are already consistent per dataset version: drop pseudonymize, "
                             "or set mode 'redact'")
        return self
