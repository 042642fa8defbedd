"""Everything a curation job can be told, with defaults a bank's data team can start from."""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from google.protobuf import json_format
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from privtune.v1 import curation_config_pb2, events_pb2
from services.common.errors import InvalidArgument, Precondition
from services.common.validation import invalid
from services.curation.canaries import CanaryConfig
from services.curation.dedupe import DedupeConfig
from services.curation.parsers import ParserConfig
from services.common.pii import PiiConfig
from services.curation.quality import QualityConfig


class CurationConfig(BaseModel):
    """Full configuration of a curation job; its sha256 is part of the dataset version."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

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
    canaries: CanaryConfig = Field(default_factory=CanaryConfig)

    @field_validator("quality", mode="before")
    @classmethod
    def _short_records(cls, v: object) -> object:
        """A quality section given in part keeps this config's min_tokens default (5), not QualityConfig's (50)."""
        if isinstance(v, dict) and "min_tokens" not in v:
            return {**v, "min_tokens": 5}
        return v

    @field_validator("general_mix_ratio")
    @classmethod
    def _mix_in_range(cls, v: float) -> float:
        if v != 0 and not 0.05 <= v <= 0.30:
            raise ValueError("general_mix_ratio must be 0 (off) or between 0.05 and 0.30")
        return v

    def canonical_json(self) -> str:
        """Sorted, compact JSON of every setting; ``canaries`` only when on (count > 0).

        Canaries off change no output, so leaving them out keeps the hash, and with it
        every dataset version id, what it was before canaries existed.
        """
        exclude = None if self.canaries.enabled else {"canaries"}
        return json.dumps(self.model_dump(mode="json", exclude=exclude), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


_ENUM_PREFIX = {"recipe": "CURATION_RECIPE_", "output_format": "EXAMPLE_FORMAT_", "mode": "PII_MODE_"}


def from_message(message: curation_config_pb2.CurationConfig) -> CurationConfig:
    """The job's config from its typed message: set fields override the defaults.

    Raises:
        InvalidArgument: reason INVALID_CURATION_CONFIG, one field violation per bad field
            (``config.dedupe.threshold``).
    """
    body = json_format.MessageToDict(message, preserving_proto_field_name=True)
    _enum_names(body)
    quality = body.get("quality", {})
    if quality.pop("any_language", False):
        quality["languages"] = []
    try:
        return CurationConfig.model_validate(body)
    except ValidationError as exc:
        raise invalid(exc, "config", "curation config", "INVALID_CURATION_CONFIG") from None


def _enum_names(node: dict[str, object]) -> None:
    """Enum names to the config's lower-case values (``PII_MODE_TAG`` -> ``tag``); UNSPECIFIED drops out."""
    for key, value in list(node.items()):
        if isinstance(value, dict):
            _enum_names(value)  # type: ignore[arg-type]
        elif key in _ENUM_PREFIX and isinstance(value, str) and value.startswith(_ENUM_PREFIX[key]):
            name = value[len(_ENUM_PREFIX[key]):].lower()
            if name == "unspecified":
                del node[key]
            else:
                node[key] = name


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
        "it), or, if the data really is public, register it with classification DATA_CLASSIFICATION_PUBLIC",
        reason="PII_REDACTION_REQUIRED", field="config.redact_pii",
        preconditions=[Precondition("CLASSIFICATION", "dataset", f"the dataset is classified {name}, not "
                                    "DATA_CLASSIFICATION_PUBLIC")])
