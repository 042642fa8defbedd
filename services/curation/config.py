"""Everything a curation job can be told, with defaults a bank's data team can start from."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from privtune.v1 import events_pb2
from services.common.errors import InvalidArgument
from services.curation.dedupe import DedupeConfig
from services.curation.parsers import ParserConfig
from services.curation.pii import PiiConfig
from services.curation.quality import QualityConfig


class CurationConfig(BaseModel):
    """Full configuration of a curation job; its sha256 is part of the dataset version."""

    model_config = ConfigDict(extra="forbid")

    recipe: Literal["auto", "passthrough", "tickets_to_sft", "documents_to_qa"] = "auto"
    output_format: Literal["alpaca", "prompt_completion", "chat"] = "alpaca"
    holdout_fraction: float = Field(0.1, ge=0.0, le=0.5, description="share of examples kept for evaluation")
    general_mix_ratio: float = Field(0.0, description="0, or 0.05-0.30: share of general instructions in train")
    shard_size: int = Field(10_000, ge=100, le=1_000_000, description="examples per shard file")
    seed: int = 0
    redact_pii: bool = Field(True, description="off only for data classified PUBLIC: skips the PII stage")
    parser: ParserConfig = Field(default_factory=ParserConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    # Instruction records are short: Gopher's 50-word minimum is meant for web pages.
    quality: QualityConfig = Field(default_factory=lambda: QualityConfig(min_tokens=5))

    @field_validator("general_mix_ratio")
    @classmethod
    def _mix_in_range(cls, v: float) -> float:
        if v != 0 and not 0.05 <= v <= 0.30:
            raise ValueError("general_mix_ratio must be 0 (off) or between 0.05 and 0.30")
        return v

    def canonical_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def check_pii_redaction(config: CurationConfig, classification: int) -> None:
    """Refuse to skip PII redaction for a dataset not classified public.

    ``redact_pii: false`` copies raw text into training data unchanged, so it is only for
    data anyone may read (``DATA_CLASSIFICATION_PUBLIC``); an unspecified classification
    counts as private.

    Raises:
        InvalidArgument: naming the dataset's classification and what to do instead.
    """
    if config.redact_pii or classification == events_pb2.DATA_CLASSIFICATION_PUBLIC:
        return
    try:
        name = events_pb2.DataClassification.Name(classification)  # type: ignore[arg-type]
    except ValueError:
        name = f"classification {classification}"
    raise InvalidArgument(
        f"redact_pii=false is only allowed for datasets classified DATA_CLASSIFICATION_PUBLIC, and this dataset is "
        f"classified {name}: keep PII redaction on (remove redact_pii; pii.mode=tag marks PII instead of replacing "
        "it), or, if the data really is public, register it with classification DATA_CLASSIFICATION_PUBLIC")
