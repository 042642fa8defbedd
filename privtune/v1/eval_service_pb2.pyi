import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from privtune.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EvalRunState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVAL_RUN_STATE_UNSPECIFIED: _ClassVar[EvalRunState]
    EVAL_RUN_STATE_RUNNING: _ClassVar[EvalRunState]
    EVAL_RUN_STATE_SUCCEEDED: _ClassVar[EvalRunState]
    EVAL_RUN_STATE_FAILED: _ClassVar[EvalRunState]
EVAL_RUN_STATE_UNSPECIFIED: EvalRunState
EVAL_RUN_STATE_RUNNING: EvalRunState
EVAL_RUN_STATE_SUCCEEDED: EvalRunState
EVAL_RUN_STATE_FAILED: EvalRunState

class EvalSuiteOptions(_message.Message):
    __slots__ = ("include_general", "general_per_category", "include_safety", "max_domain_items", "extraction_items", "seed", "safety_per_category")
    INCLUDE_GENERAL_FIELD_NUMBER: _ClassVar[int]
    GENERAL_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SAFETY_FIELD_NUMBER: _ClassVar[int]
    MAX_DOMAIN_ITEMS_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_ITEMS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SAFETY_PER_CATEGORY_FIELD_NUMBER: _ClassVar[int]
    include_general: bool
    general_per_category: int
    include_safety: bool
    max_domain_items: int
    extraction_items: int
    seed: int
    safety_per_category: int
    def __init__(self, include_general: _Optional[bool] = ..., general_per_category: _Optional[int] = ..., include_safety: _Optional[bool] = ..., max_domain_items: _Optional[int] = ..., extraction_items: _Optional[int] = ..., seed: _Optional[int] = ..., safety_per_category: _Optional[int] = ...) -> None: ...

class EvalSuite(_message.Message):
    __slots__ = ("suite_id", "name", "uri", "manifest_sha256", "item_count", "counts", "dataset_version_id", "canaries", "created_at")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    CANARIES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    suite_id: str
    name: str
    uri: str
    manifest_sha256: str
    item_count: int
    counts: _containers.ScalarMap[str, int]
    dataset_version_id: str
    canaries: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, suite_id: _Optional[str] = ..., name: _Optional[str] = ..., uri: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., item_count: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ..., dataset_version_id: _Optional[str] = ..., canaries: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateEvalSuiteRequest(_message.Message):
    __slots__ = ("name", "dataset_version_id", "options")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset_version_id: str
    options: EvalSuiteOptions
    def __init__(self, name: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., options: _Optional[_Union[EvalSuiteOptions, _Mapping]] = ...) -> None: ...

class CreateEvalSuiteResponse(_message.Message):
    __slots__ = ("suite",)
    SUITE_FIELD_NUMBER: _ClassVar[int]
    suite: EvalSuite
    def __init__(self, suite: _Optional[_Union[EvalSuite, _Mapping]] = ...) -> None: ...

class GetEvalSuiteRequest(_message.Message):
    __slots__ = ("suite_id",)
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    suite_id: str
    def __init__(self, suite_id: _Optional[str] = ...) -> None: ...

class GetEvalSuiteResponse(_message.Message):
    __slots__ = ("suite",)
    SUITE_FIELD_NUMBER: _ClassVar[int]
    suite: EvalSuite
    def __init__(self, suite: _Optional[_Union[EvalSuite, _Mapping]] = ...) -> None: ...

class EvalRun(_message.Message):
    __slots__ = ("eval_id", "state", "model_version_id", "suite_id", "job_id", "shards_total", "shards_done", "passed", "metrics", "estimates", "gates", "reason", "report_uri", "judge", "error_code", "created_at", "updated_at", "item_count", "trigger")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SHARDS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SHARDS_DONE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REPORT_URI_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    state: EvalRunState
    model_version_id: str
    suite_id: str
    job_id: str
    shards_total: int
    shards_done: int
    passed: bool
    metrics: _containers.ScalarMap[str, float]
    estimates: _containers.RepeatedCompositeFieldContainer[_events_pb2.MetricEstimate]
    gates: _containers.RepeatedCompositeFieldContainer[_events_pb2.GateResult]
    reason: str
    report_uri: str
    judge: str
    error_code: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    item_count: int
    trigger: str
    def __init__(self, eval_id: _Optional[str] = ..., state: _Optional[_Union[EvalRunState, str]] = ..., model_version_id: _Optional[str] = ..., suite_id: _Optional[str] = ..., job_id: _Optional[str] = ..., shards_total: _Optional[int] = ..., shards_done: _Optional[int] = ..., passed: _Optional[bool] = ..., metrics: _Optional[_Mapping[str, float]] = ..., estimates: _Optional[_Iterable[_Union[_events_pb2.MetricEstimate, _Mapping]]] = ..., gates: _Optional[_Iterable[_Union[_events_pb2.GateResult, _Mapping]]] = ..., reason: _Optional[str] = ..., report_uri: _Optional[str] = ..., judge: _Optional[str] = ..., error_code: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., item_count: _Optional[int] = ..., trigger: _Optional[str] = ...) -> None: ...

class CreateEvalRunRequest(_message.Message):
    __slots__ = ("model_version_id", "suite_id", "gates", "judge", "generation", "shard_size", "request_id")
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SHARD_SIZE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    suite_id: str
    gates: _events_pb2.EvalGates
    judge: str
    generation: _events_pb2.GenerationSettings
    shard_size: int
    request_id: str
    def __init__(self, model_version_id: _Optional[str] = ..., suite_id: _Optional[str] = ..., gates: _Optional[_Union[_events_pb2.EvalGates, _Mapping]] = ..., judge: _Optional[str] = ..., generation: _Optional[_Union[_events_pb2.GenerationSettings, _Mapping]] = ..., shard_size: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateEvalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: EvalRun
    def __init__(self, run: _Optional[_Union[EvalRun, _Mapping]] = ...) -> None: ...

class GetEvalRunRequest(_message.Message):
    __slots__ = ("eval_id",)
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    def __init__(self, eval_id: _Optional[str] = ...) -> None: ...

class GetEvalRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: EvalRun
    def __init__(self, run: _Optional[_Union[EvalRun, _Mapping]] = ...) -> None: ...

class ListEvalRunsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "model_version_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    model_version_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., model_version_id: _Optional[str] = ...) -> None: ...

class ListEvalRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[EvalRun]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[EvalRun, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchEvalRunRequest(_message.Message):
    __slots__ = ("eval_id",)
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    def __init__(self, eval_id: _Optional[str] = ...) -> None: ...

class WatchEvalRunResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.EventEnvelope
    def __init__(self, event: _Optional[_Union[_events_pb2.EventEnvelope, _Mapping]] = ...) -> None: ...
