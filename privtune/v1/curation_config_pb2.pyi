from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CurationRecipe(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURATION_RECIPE_UNSPECIFIED: _ClassVar[CurationRecipe]
    CURATION_RECIPE_AUTO: _ClassVar[CurationRecipe]
    CURATION_RECIPE_PASSTHROUGH: _ClassVar[CurationRecipe]
    CURATION_RECIPE_TICKETS_TO_SFT: _ClassVar[CurationRecipe]
    CURATION_RECIPE_DOCUMENTS_TO_QA: _ClassVar[CurationRecipe]

class ExampleFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXAMPLE_FORMAT_UNSPECIFIED: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_ALPACA: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_PROMPT_COMPLETION: _ClassVar[ExampleFormat]
    EXAMPLE_FORMAT_CHAT: _ClassVar[ExampleFormat]

class PiiMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PII_MODE_UNSPECIFIED: _ClassVar[PiiMode]
    PII_MODE_REDACT: _ClassVar[PiiMode]
    PII_MODE_TAG: _ClassVar[PiiMode]
    PII_MODE_DROP_RECORD: _ClassVar[PiiMode]
    PII_MODE_SURROGATE: _ClassVar[PiiMode]
CURATION_RECIPE_UNSPECIFIED: CurationRecipe
CURATION_RECIPE_AUTO: CurationRecipe
CURATION_RECIPE_PASSTHROUGH: CurationRecipe
CURATION_RECIPE_TICKETS_TO_SFT: CurationRecipe
CURATION_RECIPE_DOCUMENTS_TO_QA: CurationRecipe
EXAMPLE_FORMAT_UNSPECIFIED: ExampleFormat
EXAMPLE_FORMAT_ALPACA: ExampleFormat
EXAMPLE_FORMAT_PROMPT_COMPLETION: ExampleFormat
EXAMPLE_FORMAT_CHAT: ExampleFormat
PII_MODE_UNSPECIFIED: PiiMode
PII_MODE_REDACT: PiiMode
PII_MODE_TAG: PiiMode
PII_MODE_DROP_RECORD: PiiMode
PII_MODE_SURROGATE: PiiMode

class CurationConfig(_message.Message):
    __slots__ = ("recipe", "output_format", "holdout_fraction", "general_mix_ratio", "shard_size", "seed", "redact_pii", "parser", "pii", "dedupe", "quality", "canaries")
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FORMAT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_FRACTION_FIELD_NUMBER: _ClassVar[int]
    GENERAL_MIX_RATIO_FIELD_NUMBER: _ClassVar[int]
    SHARD_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    REDACT_PII_FIELD_NUMBER: _ClassVar[int]
    PARSER_FIELD_NUMBER: _ClassVar[int]
    PII_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_FIELD_NUMBER: _ClassVar[int]
    QUALITY_FIELD_NUMBER: _ClassVar[int]
    CANARIES_FIELD_NUMBER: _ClassVar[int]
    recipe: CurationRecipe
    output_format: ExampleFormat
    holdout_fraction: float
    general_mix_ratio: float
    shard_size: int
    seed: int
    redact_pii: bool
    parser: ParserSettings
    pii: PiiSettings
    dedupe: DedupeSettings
    quality: QualitySettings
    canaries: CanarySettings
    def __init__(self, recipe: _Optional[_Union[CurationRecipe, str]] = ..., output_format: _Optional[_Union[ExampleFormat, str]] = ..., holdout_fraction: _Optional[float] = ..., general_mix_ratio: _Optional[float] = ..., shard_size: _Optional[int] = ..., seed: _Optional[int] = ..., redact_pii: _Optional[bool] = ..., parser: _Optional[_Union[ParserSettings, _Mapping]] = ..., pii: _Optional[_Union[PiiSettings, _Mapping]] = ..., dedupe: _Optional[_Union[DedupeSettings, _Mapping]] = ..., quality: _Optional[_Union[QualitySettings, _Mapping]] = ..., canaries: _Optional[_Union[CanarySettings, _Mapping]] = ...) -> None: ...

class CanarySettings(_message.Message):
    __slots__ = ("count", "repeats", "candidates", "seed")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    REPEATS_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    count: int
    repeats: int
    candidates: int
    seed: int
    def __init__(self, count: _Optional[int] = ..., repeats: _Optional[int] = ..., candidates: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class ParserSettings(_message.Message):
    __slots__ = ("max_record_bytes", "max_archive_ratio", "max_archive_bytes", "max_archive_members", "max_archive_depth", "text_chunk_bytes")
    MAX_RECORD_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ARCHIVE_RATIO_FIELD_NUMBER: _ClassVar[int]
    MAX_ARCHIVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_ARCHIVE_MEMBERS_FIELD_NUMBER: _ClassVar[int]
    MAX_ARCHIVE_DEPTH_FIELD_NUMBER: _ClassVar[int]
    TEXT_CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    max_record_bytes: int
    max_archive_ratio: float
    max_archive_bytes: int
    max_archive_members: int
    max_archive_depth: int
    text_chunk_bytes: int
    def __init__(self, max_record_bytes: _Optional[int] = ..., max_archive_ratio: _Optional[float] = ..., max_archive_bytes: _Optional[int] = ..., max_archive_members: _Optional[int] = ..., max_archive_depth: _Optional[int] = ..., text_chunk_bytes: _Optional[int] = ...) -> None: ...

class PiiSettings(_message.Message):
    __slots__ = ("mode", "entities", "score_threshold", "pseudonymize")
    MODE_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PSEUDONYMIZE_FIELD_NUMBER: _ClassVar[int]
    mode: PiiMode
    entities: _containers.RepeatedScalarFieldContainer[str]
    score_threshold: float
    pseudonymize: bool
    def __init__(self, mode: _Optional[_Union[PiiMode, str]] = ..., entities: _Optional[_Iterable[str]] = ..., score_threshold: _Optional[float] = ..., pseudonymize: _Optional[bool] = ...) -> None: ...

class DedupeSettings(_message.Message):
    __slots__ = ("exact", "near", "shingle_size", "num_perm", "threshold", "false_negative_weight", "seed", "strip_boilerplate", "shingle_unit", "min_fact_overlap")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    NEAR_FIELD_NUMBER: _ClassVar[int]
    SHINGLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    NUM_PERM_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FALSE_NEGATIVE_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    STRIP_BOILERPLATE_FIELD_NUMBER: _ClassVar[int]
    SHINGLE_UNIT_FIELD_NUMBER: _ClassVar[int]
    MIN_FACT_OVERLAP_FIELD_NUMBER: _ClassVar[int]
    exact: bool
    near: bool
    shingle_size: int
    num_perm: int
    threshold: float
    false_negative_weight: float
    seed: int
    strip_boilerplate: bool
    shingle_unit: str
    min_fact_overlap: float
    def __init__(self, exact: _Optional[bool] = ..., near: _Optional[bool] = ..., shingle_size: _Optional[int] = ..., num_perm: _Optional[int] = ..., threshold: _Optional[float] = ..., false_negative_weight: _Optional[float] = ..., seed: _Optional[int] = ..., strip_boilerplate: _Optional[bool] = ..., shingle_unit: _Optional[str] = ..., min_fact_overlap: _Optional[float] = ...) -> None: ...

class QualitySettings(_message.Message):
    __slots__ = ("min_tokens", "max_tokens", "min_tokens_for_repetition", "max_symbol_to_word_ratio", "min_alpha_word_fraction", "max_duplicate_line_fraction", "max_duplicate_line_char_fraction", "max_duplicate_paragraph_fraction", "max_duplicate_paragraph_char_fraction", "max_duplicate_ngram_fraction", "languages", "any_language", "min_language_confidence", "max_toxicity_score")
    class MaxDuplicateNgramFractionEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: float
        def __init__(self, key: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...
    MIN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MIN_TOKENS_FOR_REPETITION_FIELD_NUMBER: _ClassVar[int]
    MAX_SYMBOL_TO_WORD_RATIO_FIELD_NUMBER: _ClassVar[int]
    MIN_ALPHA_WORD_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATE_LINE_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATE_LINE_CHAR_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATE_PARAGRAPH_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATE_PARAGRAPH_CHAR_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_DUPLICATE_NGRAM_FRACTION_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    ANY_LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    MIN_LANGUAGE_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOXICITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    min_tokens: int
    max_tokens: int
    min_tokens_for_repetition: int
    max_symbol_to_word_ratio: float
    min_alpha_word_fraction: float
    max_duplicate_line_fraction: float
    max_duplicate_line_char_fraction: float
    max_duplicate_paragraph_fraction: float
    max_duplicate_paragraph_char_fraction: float
    max_duplicate_ngram_fraction: _containers.ScalarMap[int, float]
    languages: _containers.RepeatedScalarFieldContainer[str]
    any_language: bool
    min_language_confidence: float
    max_toxicity_score: float
    def __init__(self, min_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., min_tokens_for_repetition: _Optional[int] = ..., max_symbol_to_word_ratio: _Optional[float] = ..., min_alpha_word_fraction: _Optional[float] = ..., max_duplicate_line_fraction: _Optional[float] = ..., max_duplicate_line_char_fraction: _Optional[float] = ..., max_duplicate_paragraph_fraction: _Optional[float] = ..., max_duplicate_paragraph_char_fraction: _Optional[float] = ..., max_duplicate_ngram_fraction: _Optional[_Mapping[int, float]] = ..., languages: _Optional[_Iterable[str]] = ..., any_language: _Optional[bool] = ..., min_language_confidence: _Optional[float] = ..., max_toxicity_score: _Optional[float] = ...) -> None: ...
