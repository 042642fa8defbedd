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

class TrainingJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_JOB_STATE_UNSPECIFIED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_REQUESTED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_REJECTED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_QUEUED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_SCHEDULED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_RUNNING: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_SUCCEEDED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_FAILED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_CANCELLED: _ClassVar[TrainingJobState]
    TRAINING_JOB_STATE_PREEMPTED: _ClassVar[TrainingJobState]

class PrivacyLedgerEntryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIVACY_LEDGER_ENTRY_STATE_UNSPECIFIED: _ClassVar[PrivacyLedgerEntryState]
    PRIVACY_LEDGER_ENTRY_STATE_RESERVED: _ClassVar[PrivacyLedgerEntryState]
    PRIVACY_LEDGER_ENTRY_STATE_SETTLED: _ClassVar[PrivacyLedgerEntryState]
TRAINING_JOB_STATE_UNSPECIFIED: TrainingJobState
TRAINING_JOB_STATE_REQUESTED: TrainingJobState
TRAINING_JOB_STATE_REJECTED: TrainingJobState
TRAINING_JOB_STATE_QUEUED: TrainingJobState
TRAINING_JOB_STATE_SCHEDULED: TrainingJobState
TRAINING_JOB_STATE_RUNNING: TrainingJobState
TRAINING_JOB_STATE_SUCCEEDED: TrainingJobState
TRAINING_JOB_STATE_FAILED: TrainingJobState
TRAINING_JOB_STATE_CANCELLED: TrainingJobState
TRAINING_JOB_STATE_PREEMPTED: TrainingJobState
PRIVACY_LEDGER_ENTRY_STATE_UNSPECIFIED: PrivacyLedgerEntryState
PRIVACY_LEDGER_ENTRY_STATE_RESERVED: PrivacyLedgerEntryState
PRIVACY_LEDGER_ENTRY_STATE_SETTLED: PrivacyLedgerEntryState

class TrainingJobSpec(_message.Message):
    __slots__ = ("name", "base_model_id", "dataset_version_id", "method", "lora_config", "qlora", "gpu_pool", "hyperparameters", "dp", "evaluation_suite_id", "experiment_tags", "priority", "gpus", "options", "eval_gates")
    class ExperimentTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LORA_CONFIG_FIELD_NUMBER: _ClassVar[int]
    QLORA_FIELD_NUMBER: _ClassVar[int]
    GPU_POOL_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_TAGS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    EVAL_GATES_FIELD_NUMBER: _ClassVar[int]
    name: str
    base_model_id: str
    dataset_version_id: str
    method: _events_pb2.TrainingMethod
    lora_config: _events_pb2.LoraConfig
    qlora: bool
    gpu_pool: str
    hyperparameters: _events_pb2.Hyperparameters
    dp: _events_pb2.DifferentialPrivacy
    evaluation_suite_id: str
    experiment_tags: _containers.ScalarMap[str, str]
    priority: int
    gpus: int
    options: TrainingOptions
    eval_gates: _events_pb2.EvalGates
    def __init__(self, name: _Optional[str] = ..., base_model_id: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., method: _Optional[_Union[_events_pb2.TrainingMethod, str]] = ..., lora_config: _Optional[_Union[_events_pb2.LoraConfig, _Mapping]] = ..., qlora: _Optional[bool] = ..., gpu_pool: _Optional[str] = ..., hyperparameters: _Optional[_Union[_events_pb2.Hyperparameters, _Mapping]] = ..., dp: _Optional[_Union[_events_pb2.DifferentialPrivacy, _Mapping]] = ..., evaluation_suite_id: _Optional[str] = ..., experiment_tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., gpus: _Optional[int] = ..., options: _Optional[_Union[TrainingOptions, _Mapping]] = ..., eval_gates: _Optional[_Union[_events_pb2.EvalGates, _Mapping]] = ...) -> None: ...

class TrainingOptions(_message.Message):
    __slots__ = ("weight_decay", "num_virtual_tokens", "dpo_beta", "checkpoint_every", "keep_last_checkpoints", "eval_every", "divergence_factor", "memory_limit_mb", "merge_weights")
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    NUM_VIRTUAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DPO_BETA_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_EVERY_FIELD_NUMBER: _ClassVar[int]
    KEEP_LAST_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    EVAL_EVERY_FIELD_NUMBER: _ClassVar[int]
    DIVERGENCE_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MEMORY_LIMIT_MB_FIELD_NUMBER: _ClassVar[int]
    MERGE_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    weight_decay: float
    num_virtual_tokens: int
    dpo_beta: float
    checkpoint_every: int
    keep_last_checkpoints: int
    eval_every: int
    divergence_factor: float
    memory_limit_mb: int
    merge_weights: bool
    def __init__(self, weight_decay: _Optional[float] = ..., num_virtual_tokens: _Optional[int] = ..., dpo_beta: _Optional[float] = ..., checkpoint_every: _Optional[int] = ..., keep_last_checkpoints: _Optional[int] = ..., eval_every: _Optional[int] = ..., divergence_factor: _Optional[float] = ..., memory_limit_mb: _Optional[int] = ..., merge_weights: _Optional[bool] = ...) -> None: ...

class TrainingJob(_message.Message):
    __slots__ = ("job_id", "name", "state", "base_model_id", "dataset_version_id", "method", "lora_config", "qlora", "gpu_pool", "hyperparameters", "dp", "evaluation_suite_id", "experiment_tags", "step", "loss", "last_checkpoint_id", "artifact_uri", "artifact_sha256", "reason", "created_at", "updated_at", "priority", "attempt", "gpus", "estimate", "violations", "epsilon_spent", "policy_version", "model_version_id", "total_steps", "eval_loss")
    class ExperimentTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LORA_CONFIG_FIELD_NUMBER: _ClassVar[int]
    QLORA_FIELD_NUMBER: _ClassVar[int]
    GPU_POOL_FIELD_NUMBER: _ClassVar[int]
    HYPERPARAMETERS_FIELD_NUMBER: _ClassVar[int]
    DP_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    EXPERIMENT_TAGS_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: TrainingJobState
    base_model_id: str
    dataset_version_id: str
    method: _events_pb2.TrainingMethod
    lora_config: _events_pb2.LoraConfig
    qlora: bool
    gpu_pool: str
    hyperparameters: _events_pb2.Hyperparameters
    dp: _events_pb2.DifferentialPrivacy
    evaluation_suite_id: str
    experiment_tags: _containers.ScalarMap[str, str]
    step: int
    loss: float
    last_checkpoint_id: str
    artifact_uri: str
    artifact_sha256: str
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    priority: int
    attempt: int
    gpus: int
    estimate: _events_pb2.ResourceEstimate
    violations: _containers.RepeatedCompositeFieldContainer[_events_pb2.PolicyViolation]
    epsilon_spent: float
    policy_version: str
    model_version_id: str
    total_steps: int
    eval_loss: float
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., base_model_id: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., method: _Optional[_Union[_events_pb2.TrainingMethod, str]] = ..., lora_config: _Optional[_Union[_events_pb2.LoraConfig, _Mapping]] = ..., qlora: _Optional[bool] = ..., gpu_pool: _Optional[str] = ..., hyperparameters: _Optional[_Union[_events_pb2.Hyperparameters, _Mapping]] = ..., dp: _Optional[_Union[_events_pb2.DifferentialPrivacy, _Mapping]] = ..., evaluation_suite_id: _Optional[str] = ..., experiment_tags: _Optional[_Mapping[str, str]] = ..., step: _Optional[int] = ..., loss: _Optional[float] = ..., last_checkpoint_id: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., priority: _Optional[int] = ..., attempt: _Optional[int] = ..., gpus: _Optional[int] = ..., estimate: _Optional[_Union[_events_pb2.ResourceEstimate, _Mapping]] = ..., violations: _Optional[_Iterable[_Union[_events_pb2.PolicyViolation, _Mapping]]] = ..., epsilon_spent: _Optional[float] = ..., policy_version: _Optional[str] = ..., model_version_id: _Optional[str] = ..., total_steps: _Optional[int] = ..., eval_loss: _Optional[float] = ...) -> None: ...

class CreateTrainingJobRequest(_message.Message):
    __slots__ = ("request_id", "spec")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    spec: TrainingJobSpec
    def __init__(self, request_id: _Optional[str] = ..., spec: _Optional[_Union[TrainingJobSpec, _Mapping]] = ...) -> None: ...

class CreateTrainingJobResponse(_message.Message):
    __slots__ = ("job", "position")
    JOB_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    position: str
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

class GetTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetTrainingJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ...) -> None: ...

class ListTrainingJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "state", "min_position")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MIN_POSITION_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    state: TrainingJobState
    min_position: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., state: _Optional[_Union[TrainingJobState, str]] = ..., min_position: _Optional[str] = ...) -> None: ...

class ListTrainingJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token", "position")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[TrainingJob]
    next_page_token: str
    position: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[TrainingJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., position: _Optional[str] = ...) -> None: ...

class CancelTrainingJobRequest(_message.Message):
    __slots__ = ("job_id", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTrainingJobResponse(_message.Message):
    __slots__ = ("job", "position")
    JOB_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    job: TrainingJob
    position: str
    def __init__(self, job: _Optional[_Union[TrainingJob, _Mapping]] = ..., position: _Optional[str] = ...) -> None: ...

class WatchTrainingJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchTrainingJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.EventEnvelope
    def __init__(self, event: _Optional[_Union[_events_pb2.EventEnvelope, _Mapping]] = ...) -> None: ...

class EstimateTrainingJobRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: TrainingJobSpec
    def __init__(self, spec: _Optional[_Union[TrainingJobSpec, _Mapping]] = ...) -> None: ...

class EstimateTrainingJobResponse(_message.Message):
    __slots__ = ("estimate", "violations", "policy_version", "method", "fitting_methods")
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    FITTING_METHODS_FIELD_NUMBER: _ClassVar[int]
    estimate: _events_pb2.ResourceEstimate
    violations: _containers.RepeatedCompositeFieldContainer[_events_pb2.PolicyViolation]
    policy_version: str
    method: _events_pb2.TrainingMethod
    fitting_methods: _containers.RepeatedScalarFieldContainer[_events_pb2.TrainingMethod]
    def __init__(self, estimate: _Optional[_Union[_events_pb2.ResourceEstimate, _Mapping]] = ..., violations: _Optional[_Iterable[_Union[_events_pb2.PolicyViolation, _Mapping]]] = ..., policy_version: _Optional[str] = ..., method: _Optional[_Union[_events_pb2.TrainingMethod, str]] = ..., fitting_methods: _Optional[_Iterable[_Union[_events_pb2.TrainingMethod, str]]] = ...) -> None: ...

class GetPrivacyLedgerRequest(_message.Message):
    __slots__ = ("month",)
    MONTH_FIELD_NUMBER: _ClassVar[int]
    month: str
    def __init__(self, month: _Optional[str] = ...) -> None: ...

class PrivacyLedgerEntry(_message.Message):
    __slots__ = ("job_id", "epsilon_reserved", "epsilon_spent", "state")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    EPSILON_RESERVED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    epsilon_reserved: float
    epsilon_spent: float
    state: PrivacyLedgerEntryState
    def __init__(self, job_id: _Optional[str] = ..., epsilon_reserved: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., state: _Optional[_Union[PrivacyLedgerEntryState, str]] = ...) -> None: ...

class PrivacyLedger(_message.Message):
    __slots__ = ("month", "monthly_cap", "epsilon_committed", "epsilon_remaining", "entries")
    MONTH_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_CAP_FIELD_NUMBER: _ClassVar[int]
    EPSILON_COMMITTED_FIELD_NUMBER: _ClassVar[int]
    EPSILON_REMAINING_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    month: str
    monthly_cap: float
    epsilon_committed: float
    epsilon_remaining: float
    entries: _containers.RepeatedCompositeFieldContainer[PrivacyLedgerEntry]
    def __init__(self, month: _Optional[str] = ..., monthly_cap: _Optional[float] = ..., epsilon_committed: _Optional[float] = ..., epsilon_remaining: _Optional[float] = ..., entries: _Optional[_Iterable[_Union[PrivacyLedgerEntry, _Mapping]]] = ...) -> None: ...

class GetPrivacyLedgerResponse(_message.Message):
    __slots__ = ("ledger",)
    LEDGER_FIELD_NUMBER: _ClassVar[int]
    ledger: PrivacyLedger
    def __init__(self, ledger: _Optional[_Union[PrivacyLedger, _Mapping]] = ...) -> None: ...
