import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DataClassification(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_CLASSIFICATION_UNSPECIFIED: _ClassVar[DataClassification]
    DATA_CLASSIFICATION_PUBLIC: _ClassVar[DataClassification]
    DATA_CLASSIFICATION_INTERNAL: _ClassVar[DataClassification]
    DATA_CLASSIFICATION_CONFIDENTIAL: _ClassVar[DataClassification]
    DATA_CLASSIFICATION_RESTRICTED: _ClassVar[DataClassification]

class DatasetFormat(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATASET_FORMAT_UNSPECIFIED: _ClassVar[DatasetFormat]
    DATASET_FORMAT_JSONL: _ClassVar[DatasetFormat]
    DATASET_FORMAT_CSV: _ClassVar[DatasetFormat]
    DATASET_FORMAT_MARKDOWN: _ClassVar[DatasetFormat]
    DATASET_FORMAT_HTML: _ClassVar[DatasetFormat]
    DATASET_FORMAT_PDF: _ClassVar[DatasetFormat]
    DATASET_FORMAT_TICKETS_JSON: _ClassVar[DatasetFormat]
    DATASET_FORMAT_SOURCE_CODE: _ClassVar[DatasetFormat]
    DATASET_FORMAT_MIXED: _ClassVar[DatasetFormat]

class TrainingMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_METHOD_UNSPECIFIED: _ClassVar[TrainingMethod]
    TRAINING_METHOD_FULL: _ClassVar[TrainingMethod]
    TRAINING_METHOD_LORA: _ClassVar[TrainingMethod]
    TRAINING_METHOD_QLORA: _ClassVar[TrainingMethod]
    TRAINING_METHOD_PROMPT_TUNING: _ClassVar[TrainingMethod]
    TRAINING_METHOD_DPO: _ClassVar[TrainingMethod]
    TRAINING_METHOD_CONTINUED_PRETRAINING: _ClassVar[TrainingMethod]

class RolloutStrategy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLLOUT_STRATEGY_UNSPECIFIED: _ClassVar[RolloutStrategy]
    ROLLOUT_STRATEGY_BLUE_GREEN: _ClassVar[RolloutStrategy]
    ROLLOUT_STRATEGY_CANARY: _ClassVar[RolloutStrategy]
    ROLLOUT_STRATEGY_SHADOW: _ClassVar[RolloutStrategy]
DATA_CLASSIFICATION_UNSPECIFIED: DataClassification
DATA_CLASSIFICATION_PUBLIC: DataClassification
DATA_CLASSIFICATION_INTERNAL: DataClassification
DATA_CLASSIFICATION_CONFIDENTIAL: DataClassification
DATA_CLASSIFICATION_RESTRICTED: DataClassification
DATASET_FORMAT_UNSPECIFIED: DatasetFormat
DATASET_FORMAT_JSONL: DatasetFormat
DATASET_FORMAT_CSV: DatasetFormat
DATASET_FORMAT_MARKDOWN: DatasetFormat
DATASET_FORMAT_HTML: DatasetFormat
DATASET_FORMAT_PDF: DatasetFormat
DATASET_FORMAT_TICKETS_JSON: DatasetFormat
DATASET_FORMAT_SOURCE_CODE: DatasetFormat
DATASET_FORMAT_MIXED: DatasetFormat
TRAINING_METHOD_UNSPECIFIED: TrainingMethod
TRAINING_METHOD_FULL: TrainingMethod
TRAINING_METHOD_LORA: TrainingMethod
TRAINING_METHOD_QLORA: TrainingMethod
TRAINING_METHOD_PROMPT_TUNING: TrainingMethod
TRAINING_METHOD_DPO: TrainingMethod
TRAINING_METHOD_CONTINUED_PRETRAINING: TrainingMethod
ROLLOUT_STRATEGY_UNSPECIFIED: RolloutStrategy
ROLLOUT_STRATEGY_BLUE_GREEN: RolloutStrategy
ROLLOUT_STRATEGY_CANARY: RolloutStrategy
ROLLOUT_STRATEGY_SHADOW: RolloutStrategy

class EventEnvelope(_message.Message):
    __slots__ = ("id", "source", "type", "specversion", "subject", "time", "tenant_id", "actor", "correlation_id", "causation_id", "schema_version", "aggregate_version", "dataset_registered", "curation_requested", "dataset_version_created", "curation_failed", "training_requested", "training_rejected", "training_queued", "training_started", "training_progress", "checkpoint_saved", "training_completed", "training_failed", "training_heartbeat", "training_preempted", "eval_requested", "eval_completed", "deployment_requested", "deployment_approved", "pool_deployed", "traffic_flipped", "rolled_back", "pool_healthy", "shadow_started", "deployment_verified", "deployment_failed", "shadow_judged", "access_denied", "break_glass_used", "access_allowed", "training_scheduled", "training_stop_requested", "training_cancelled", "model_version_registered", "model_alias_moved", "privacy_budget_reserved", "privacy_budget_settled", "training_attempt_claimed", "training_attempt_stop", "eval_suite_created", "eval_shard_scheduled", "eval_shard_completed", "eval_shard_failed", "eval_failed")
    ID_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPECVERSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    CAUSATION_ID_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGGREGATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    DATASET_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    CURATION_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_CREATED_FIELD_NUMBER: _ClassVar[int]
    CURATION_FAILED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_REJECTED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_QUEUED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STARTED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SAVED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FAILED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TRAINING_PREEMPTED_FIELD_NUMBER: _ClassVar[int]
    EVAL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    EVAL_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_APPROVED_FIELD_NUMBER: _ClassVar[int]
    POOL_DEPLOYED_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_FLIPPED_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FIELD_NUMBER: _ClassVar[int]
    POOL_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    SHADOW_STARTED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_VERIFIED_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FAILED_FIELD_NUMBER: _ClassVar[int]
    SHADOW_JUDGED_FIELD_NUMBER: _ClassVar[int]
    ACCESS_DENIED_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_USED_FIELD_NUMBER: _ClassVar[int]
    ACCESS_ALLOWED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_CANCELLED_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_REGISTERED_FIELD_NUMBER: _ClassVar[int]
    MODEL_ALIAS_MOVED_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_BUDGET_RESERVED_FIELD_NUMBER: _ClassVar[int]
    PRIVACY_BUDGET_SETTLED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ATTEMPT_CLAIMED_FIELD_NUMBER: _ClassVar[int]
    TRAINING_ATTEMPT_STOP_FIELD_NUMBER: _ClassVar[int]
    EVAL_SUITE_CREATED_FIELD_NUMBER: _ClassVar[int]
    EVAL_SHARD_SCHEDULED_FIELD_NUMBER: _ClassVar[int]
    EVAL_SHARD_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    EVAL_SHARD_FAILED_FIELD_NUMBER: _ClassVar[int]
    EVAL_FAILED_FIELD_NUMBER: _ClassVar[int]
    id: str
    source: str
    type: str
    specversion: str
    subject: str
    time: _timestamp_pb2.Timestamp
    tenant_id: str
    actor: str
    correlation_id: str
    causation_id: str
    schema_version: int
    aggregate_version: int
    dataset_registered: DatasetRegistered
    curation_requested: CurationRequested
    dataset_version_created: DatasetVersionCreated
    curation_failed: CurationFailed
    training_requested: TrainingRequested
    training_rejected: TrainingRejected
    training_queued: TrainingQueued
    training_started: TrainingStarted
    training_progress: TrainingProgress
    checkpoint_saved: CheckpointSaved
    training_completed: TrainingCompleted
    training_failed: TrainingFailed
    training_heartbeat: TrainingHeartbeat
    training_preempted: TrainingPreempted
    eval_requested: EvalRequested
    eval_completed: EvalCompleted
    deployment_requested: DeploymentRequested
    deployment_approved: DeploymentApproved
    pool_deployed: PoolDeployed
    traffic_flipped: TrafficFlipped
    rolled_back: RolledBack
    pool_healthy: PoolHealthy
    shadow_started: ShadowStarted
    deployment_verified: DeploymentVerified
    deployment_failed: DeploymentFailed
    shadow_judged: ShadowJudged
    access_denied: AccessDenied
    break_glass_used: BreakGlassUsed
    access_allowed: AccessAllowed
    training_scheduled: TrainingScheduled
    training_stop_requested: TrainingStopRequested
    training_cancelled: TrainingCancelled
    model_version_registered: ModelVersionRegistered
    model_alias_moved: ModelAliasMoved
    privacy_budget_reserved: PrivacyBudgetReserved
    privacy_budget_settled: PrivacyBudgetSettled
    training_attempt_claimed: TrainingAttemptClaimed
    training_attempt_stop: TrainingAttemptStop
    eval_suite_created: EvalSuiteCreated
    eval_shard_scheduled: EvalShardScheduled
    eval_shard_completed: EvalShardCompleted
    eval_shard_failed: EvalShardFailed
    eval_failed: EvalFailed
    def __init__(self, id: _Optional[str] = ..., source: _Optional[str] = ..., type: _Optional[str] = ..., specversion: _Optional[str] = ..., subject: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tenant_id: _Optional[str] = ..., actor: _Optional[str] = ..., correlation_id: _Optional[str] = ..., causation_id: _Optional[str] = ..., schema_version: _Optional[int] = ..., aggregate_version: _Optional[int] = ..., dataset_registered: _Optional[_Union[DatasetRegistered, _Mapping]] = ..., curation_requested: _Optional[_Union[CurationRequested, _Mapping]] = ..., dataset_version_created: _Optional[_Union[DatasetVersionCreated, _Mapping]] = ..., curation_failed: _Optional[_Union[CurationFailed, _Mapping]] = ..., training_requested: _Optional[_Union[TrainingRequested, _Mapping]] = ..., training_rejected: _Optional[_Union[TrainingRejected, _Mapping]] = ..., training_queued: _Optional[_Union[TrainingQueued, _Mapping]] = ..., training_started: _Optional[_Union[TrainingStarted, _Mapping]] = ..., training_progress: _Optional[_Union[TrainingProgress, _Mapping]] = ..., checkpoint_saved: _Optional[_Union[CheckpointSaved, _Mapping]] = ..., training_completed: _Optional[_Union[TrainingCompleted, _Mapping]] = ..., training_failed: _Optional[_Union[TrainingFailed, _Mapping]] = ..., training_heartbeat: _Optional[_Union[TrainingHeartbeat, _Mapping]] = ..., training_preempted: _Optional[_Union[TrainingPreempted, _Mapping]] = ..., eval_requested: _Optional[_Union[EvalRequested, _Mapping]] = ..., eval_completed: _Optional[_Union[EvalCompleted, _Mapping]] = ..., deployment_requested: _Optional[_Union[DeploymentRequested, _Mapping]] = ..., deployment_approved: _Optional[_Union[DeploymentApproved, _Mapping]] = ..., pool_deployed: _Optional[_Union[PoolDeployed, _Mapping]] = ..., traffic_flipped: _Optional[_Union[TrafficFlipped, _Mapping]] = ..., rolled_back: _Optional[_Union[RolledBack, _Mapping]] = ..., pool_healthy: _Optional[_Union[PoolHealthy, _Mapping]] = ..., shadow_started: _Optional[_Union[ShadowStarted, _Mapping]] = ..., deployment_verified: _Optional[_Union[DeploymentVerified, _Mapping]] = ..., deployment_failed: _Optional[_Union[DeploymentFailed, _Mapping]] = ..., shadow_judged: _Optional[_Union[ShadowJudged, _Mapping]] = ..., access_denied: _Optional[_Union[AccessDenied, _Mapping]] = ..., break_glass_used: _Optional[_Union[BreakGlassUsed, _Mapping]] = ..., access_allowed: _Optional[_Union[AccessAllowed, _Mapping]] = ..., training_scheduled: _Optional[_Union[TrainingScheduled, _Mapping]] = ..., training_stop_requested: _Optional[_Union[TrainingStopRequested, _Mapping]] = ..., training_cancelled: _Optional[_Union[TrainingCancelled, _Mapping]] = ..., model_version_registered: _Optional[_Union[ModelVersionRegistered, _Mapping]] = ..., model_alias_moved: _Optional[_Union[ModelAliasMoved, _Mapping]] = ..., privacy_budget_reserved: _Optional[_Union[PrivacyBudgetReserved, _Mapping]] = ..., privacy_budget_settled: _Optional[_Union[PrivacyBudgetSettled, _Mapping]] = ..., training_attempt_claimed: _Optional[_Union[TrainingAttemptClaimed, _Mapping]] = ..., training_attempt_stop: _Optional[_Union[TrainingAttemptStop, _Mapping]] = ..., eval_suite_created: _Optional[_Union[EvalSuiteCreated, _Mapping]] = ..., eval_shard_scheduled: _Optional[_Union[EvalShardScheduled, _Mapping]] = ..., eval_shard_completed: _Optional[_Union[EvalShardCompleted, _Mapping]] = ..., eval_shard_failed: _Optional[_Union[EvalShardFailed, _Mapping]] = ..., eval_failed: _Optional[_Union[EvalFailed, _Mapping]] = ...) -> None: ...

class DatasetRegistered(_message.Message):
    __slots__ = ("dataset_id", "name", "storage_uri", "format_hint", "classification", "checksum_sha256", "file_count", "total_bytes", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    FORMAT_HINT_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_SHA256_FIELD_NUMBER: _ClassVar[int]
    FILE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    name: str
    storage_uri: str
    format_hint: DatasetFormat
    classification: DataClassification
    checksum_sha256: str
    file_count: int
    total_bytes: int
    labels: _containers.ScalarMap[str, str]
    def __init__(self, dataset_id: _Optional[str] = ..., name: _Optional[str] = ..., storage_uri: _Optional[str] = ..., format_hint: _Optional[_Union[DatasetFormat, str]] = ..., classification: _Optional[_Union[DataClassification, str]] = ..., checksum_sha256: _Optional[str] = ..., file_count: _Optional[int] = ..., total_bytes: _Optional[int] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class CurationRequested(_message.Message):
    __slots__ = ("job_id", "dataset_id", "recipe", "config_sha256", "config_json", "dataset_storage_uri", "dataset_checksum_sha256", "dataset_classification", "dataset_labels")
    class DatasetLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    DATASET_STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    DATASET_CHECKSUM_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DATASET_LABELS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset_id: str
    recipe: str
    config_sha256: str
    config_json: str
    dataset_storage_uri: str
    dataset_checksum_sha256: str
    dataset_classification: DataClassification
    dataset_labels: _containers.ScalarMap[str, str]
    def __init__(self, job_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., recipe: _Optional[str] = ..., config_sha256: _Optional[str] = ..., config_json: _Optional[str] = ..., dataset_storage_uri: _Optional[str] = ..., dataset_checksum_sha256: _Optional[str] = ..., dataset_classification: _Optional[_Union[DataClassification, str]] = ..., dataset_labels: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DatasetVersionCreated(_message.Message):
    __slots__ = ("dataset_version_id", "dataset_id", "job_id", "manifest_uri", "manifest_sha256", "record_count", "train_count", "holdout_count", "quarantined_count", "shard_count", "report_uri", "recipe", "dataset_classification", "dataset_labels", "dataset_checksum_sha256", "dataset_storage_uri", "curation_config_sha256")
    class DatasetLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_URI_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    RECORD_COUNT_FIELD_NUMBER: _ClassVar[int]
    TRAIN_COUNT_FIELD_NUMBER: _ClassVar[int]
    HOLDOUT_COUNT_FIELD_NUMBER: _ClassVar[int]
    QUARANTINED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORT_URI_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    DATASET_CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    DATASET_LABELS_FIELD_NUMBER: _ClassVar[int]
    DATASET_CHECKSUM_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    CURATION_CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    dataset_version_id: str
    dataset_id: str
    job_id: str
    manifest_uri: str
    manifest_sha256: str
    record_count: int
    train_count: int
    holdout_count: int
    quarantined_count: int
    shard_count: int
    report_uri: str
    recipe: str
    dataset_classification: DataClassification
    dataset_labels: _containers.ScalarMap[str, str]
    dataset_checksum_sha256: str
    dataset_storage_uri: str
    curation_config_sha256: str
    def __init__(self, dataset_version_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., job_id: _Optional[str] = ..., manifest_uri: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., record_count: _Optional[int] = ..., train_count: _Optional[int] = ..., holdout_count: _Optional[int] = ..., quarantined_count: _Optional[int] = ..., shard_count: _Optional[int] = ..., report_uri: _Optional[str] = ..., recipe: _Optional[str] = ..., dataset_classification: _Optional[_Union[DataClassification, str]] = ..., dataset_labels: _Optional[_Mapping[str, str]] = ..., dataset_checksum_sha256: _Optional[str] = ..., dataset_storage_uri: _Optional[str] = ..., curation_config_sha256: _Optional[str] = ...) -> None: ...

class CurationFailed(_message.Message):
    __slots__ = ("job_id", "dataset_id", "error_code", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset_id: str
    error_code: str
    reason: str
    def __init__(self, job_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class LoraConfig(_message.Message):
    __slots__ = ("r", "alpha", "dropout", "target_modules")
    R_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    DROPOUT_FIELD_NUMBER: _ClassVar[int]
    TARGET_MODULES_FIELD_NUMBER: _ClassVar[int]
    r: int
    alpha: float
    dropout: float
    target_modules: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, r: _Optional[int] = ..., alpha: _Optional[float] = ..., dropout: _Optional[float] = ..., target_modules: _Optional[_Iterable[str]] = ...) -> None: ...

class Hyperparameters(_message.Message):
    __slots__ = ("learning_rate", "epochs", "micro_batch_size", "gradient_accumulation_steps", "max_seq_length", "warmup_steps", "max_grad_norm", "seed", "max_steps", "packing")
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    MICRO_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_ACCUMULATION_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQ_LENGTH_FIELD_NUMBER: _ClassVar[int]
    WARMUP_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    PACKING_FIELD_NUMBER: _ClassVar[int]
    learning_rate: float
    epochs: int
    micro_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    warmup_steps: int
    max_grad_norm: float
    seed: int
    max_steps: int
    packing: bool
    def __init__(self, learning_rate: _Optional[float] = ..., epochs: _Optional[int] = ..., micro_batch_size: _Optional[int] = ..., gradient_accumulation_steps: _Optional[int] = ..., max_seq_length: _Optional[int] = ..., warmup_steps: _Optional[int] = ..., max_grad_norm: _Optional[float] = ..., seed: _Optional[int] = ..., max_steps: _Optional[int] = ..., packing: _Optional[bool] = ...) -> None: ...

class DifferentialPrivacy(_message.Message):
    __slots__ = ("enabled", "target_epsilon", "target_delta", "max_grad_norm")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    TARGET_DELTA_FIELD_NUMBER: _ClassVar[int]
    MAX_GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    target_epsilon: float
    target_delta: float
    max_grad_norm: float
    def __init__(self, enabled: _Optional[bool] = ..., target_epsilon: _Optional[float] = ..., target_delta: _Optional[float] = ..., max_grad_norm: _Optional[float] = ...) -> None: ...

class TrainingRequested(_message.Message):
    __slots__ = ("job_id", "name", "base_model_id", "dataset_version_id", "method", "lora_config", "qlora", "gpu_pool", "hyperparameters", "dp", "evaluation_suite_id", "experiment_tags", "priority", "config_sha256", "dataset_uri", "config_json", "gpus", "dataset_id", "classification", "eval_gates")
    class ExperimentTagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
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
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    EVAL_GATES_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    base_model_id: str
    dataset_version_id: str
    method: TrainingMethod
    lora_config: LoraConfig
    qlora: bool
    gpu_pool: str
    hyperparameters: Hyperparameters
    dp: DifferentialPrivacy
    evaluation_suite_id: str
    experiment_tags: _containers.ScalarMap[str, str]
    priority: int
    config_sha256: str
    dataset_uri: str
    config_json: str
    gpus: int
    dataset_id: str
    classification: DataClassification
    eval_gates: EvalGates
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., base_model_id: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., method: _Optional[_Union[TrainingMethod, str]] = ..., lora_config: _Optional[_Union[LoraConfig, _Mapping]] = ..., qlora: _Optional[bool] = ..., gpu_pool: _Optional[str] = ..., hyperparameters: _Optional[_Union[Hyperparameters, _Mapping]] = ..., dp: _Optional[_Union[DifferentialPrivacy, _Mapping]] = ..., evaluation_suite_id: _Optional[str] = ..., experiment_tags: _Optional[_Mapping[str, str]] = ..., priority: _Optional[int] = ..., config_sha256: _Optional[str] = ..., dataset_uri: _Optional[str] = ..., config_json: _Optional[str] = ..., gpus: _Optional[int] = ..., dataset_id: _Optional[str] = ..., classification: _Optional[_Union[DataClassification, str]] = ..., eval_gates: _Optional[_Union[EvalGates, _Mapping]] = ...) -> None: ...

class PolicyViolation(_message.Message):
    __slots__ = ("rule", "reason", "remedy")
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMEDY_FIELD_NUMBER: _ClassVar[int]
    rule: str
    reason: str
    remedy: str
    def __init__(self, rule: _Optional[str] = ..., reason: _Optional[str] = ..., remedy: _Optional[str] = ...) -> None: ...

class TrainingRejected(_message.Message):
    __slots__ = ("job_id", "rule", "reason", "remedy", "violations", "policy_version", "policy_sha256")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REMEDY_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_SHA256_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    rule: str
    reason: str
    remedy: str
    violations: _containers.RepeatedCompositeFieldContainer[PolicyViolation]
    policy_version: str
    policy_sha256: str
    def __init__(self, job_id: _Optional[str] = ..., rule: _Optional[str] = ..., reason: _Optional[str] = ..., remedy: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[PolicyViolation, _Mapping]]] = ..., policy_version: _Optional[str] = ..., policy_sha256: _Optional[str] = ...) -> None: ...

class ResourceEstimate(_message.Message):
    __slots__ = ("peak_memory_bytes", "weights_bytes", "trainable_bytes", "gradient_bytes", "optimizer_bytes", "activation_bytes", "tokens", "gpu_hours", "cost_usd", "gpu_type", "gpu_memory_bytes", "fits", "total_steps", "planned_epsilon", "noise_multiplier")
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_BYTES_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GRADIENT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OPTIMIZER_BYTES_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    GPU_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    PLANNED_EPSILON_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    peak_memory_bytes: int
    weights_bytes: int
    trainable_bytes: int
    gradient_bytes: int
    optimizer_bytes: int
    activation_bytes: int
    tokens: int
    gpu_hours: float
    cost_usd: float
    gpu_type: str
    gpu_memory_bytes: int
    fits: bool
    total_steps: int
    planned_epsilon: float
    noise_multiplier: float
    def __init__(self, peak_memory_bytes: _Optional[int] = ..., weights_bytes: _Optional[int] = ..., trainable_bytes: _Optional[int] = ..., gradient_bytes: _Optional[int] = ..., optimizer_bytes: _Optional[int] = ..., activation_bytes: _Optional[int] = ..., tokens: _Optional[int] = ..., gpu_hours: _Optional[float] = ..., cost_usd: _Optional[float] = ..., gpu_type: _Optional[str] = ..., gpu_memory_bytes: _Optional[int] = ..., fits: _Optional[bool] = ..., total_steps: _Optional[int] = ..., planned_epsilon: _Optional[float] = ..., noise_multiplier: _Optional[float] = ...) -> None: ...

class TrainingQueued(_message.Message):
    __slots__ = ("job_id", "gpu_pool", "attempt", "not_before_ms", "reason", "priority", "gpus", "estimate", "policy_version", "policy_sha256")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_POOL_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_MS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    POLICY_VERSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_SHA256_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    gpu_pool: str
    attempt: int
    not_before_ms: int
    reason: str
    priority: int
    gpus: int
    estimate: ResourceEstimate
    policy_version: str
    policy_sha256: str
    def __init__(self, job_id: _Optional[str] = ..., gpu_pool: _Optional[str] = ..., attempt: _Optional[int] = ..., not_before_ms: _Optional[int] = ..., reason: _Optional[str] = ..., priority: _Optional[int] = ..., gpus: _Optional[int] = ..., estimate: _Optional[_Union[ResourceEstimate, _Mapping]] = ..., policy_version: _Optional[str] = ..., policy_sha256: _Optional[str] = ...) -> None: ...

class TrainingScheduled(_message.Message):
    __slots__ = ("job_id", "gpu_pool", "gpus", "attempt", "executor", "gpu_type", "resume_from_checkpoint_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_POOL_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    GPU_TYPE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    gpu_pool: str
    gpus: int
    attempt: int
    executor: str
    gpu_type: str
    resume_from_checkpoint_id: str
    def __init__(self, job_id: _Optional[str] = ..., gpu_pool: _Optional[str] = ..., gpus: _Optional[int] = ..., attempt: _Optional[int] = ..., executor: _Optional[str] = ..., gpu_type: _Optional[str] = ..., resume_from_checkpoint_id: _Optional[str] = ...) -> None: ...

class TrainingStopRequested(_message.Message):
    __slots__ = ("job_id", "reason", "detail", "preempting_job_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PREEMPTING_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    detail: str
    preempting_job_id: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ..., preempting_job_id: _Optional[str] = ...) -> None: ...

class TrainingCancelled(_message.Message):
    __slots__ = ("job_id", "reason", "step", "checkpoint_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    reason: str
    step: int
    checkpoint_id: str
    def __init__(self, job_id: _Optional[str] = ..., reason: _Optional[str] = ..., step: _Optional[int] = ..., checkpoint_id: _Optional[str] = ...) -> None: ...

class TrainingStarted(_message.Message):
    __slots__ = ("job_id", "worker_id", "attempt", "resumed_from_checkpoint_id", "dataset_manifest_sha256", "base_model_sha256", "code_version", "seed", "hardware", "library_versions", "total_steps", "effective_batch_size", "config_sha256", "bitwise_reproducible", "trainable_parameters", "torch_threads", "precision", "packing_fill_ratio", "device")
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESUMED_FROM_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    BITWISE_REPRODUCIBLE_FIELD_NUMBER: _ClassVar[int]
    TRAINABLE_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    TORCH_THREADS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    PACKING_FILL_RATIO_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    attempt: int
    resumed_from_checkpoint_id: str
    dataset_manifest_sha256: str
    base_model_sha256: str
    code_version: str
    seed: int
    hardware: str
    library_versions: _containers.ScalarMap[str, str]
    total_steps: int
    effective_batch_size: int
    config_sha256: str
    bitwise_reproducible: str
    trainable_parameters: int
    torch_threads: int
    precision: str
    packing_fill_ratio: float
    device: str
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., attempt: _Optional[int] = ..., resumed_from_checkpoint_id: _Optional[str] = ..., dataset_manifest_sha256: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., seed: _Optional[int] = ..., hardware: _Optional[str] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., total_steps: _Optional[int] = ..., effective_batch_size: _Optional[int] = ..., config_sha256: _Optional[str] = ..., bitwise_reproducible: _Optional[str] = ..., trainable_parameters: _Optional[int] = ..., torch_threads: _Optional[int] = ..., precision: _Optional[str] = ..., packing_fill_ratio: _Optional[float] = ..., device: _Optional[str] = ...) -> None: ...

class TrainingProgress(_message.Message):
    __slots__ = ("job_id", "step", "total_steps", "loss", "learning_rate", "grad_norm", "tokens_per_second", "epsilon_spent", "epoch", "eval_loss", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    GRAD_NORM_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    step: int
    total_steps: int
    loss: float
    learning_rate: float
    grad_norm: float
    tokens_per_second: float
    epsilon_spent: float
    epoch: float
    eval_loss: float
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., step: _Optional[int] = ..., total_steps: _Optional[int] = ..., loss: _Optional[float] = ..., learning_rate: _Optional[float] = ..., grad_norm: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., epoch: _Optional[float] = ..., eval_loss: _Optional[float] = ..., attempt: _Optional[int] = ...) -> None: ...

class CheckpointSaved(_message.Message):
    __slots__ = ("job_id", "checkpoint_id", "step", "uri", "sha256", "metrics", "attempt")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    URI_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    checkpoint_id: str
    step: int
    uri: str
    sha256: str
    metrics: _containers.ScalarMap[str, float]
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., step: _Optional[int] = ..., uri: _Optional[str] = ..., sha256: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., attempt: _Optional[int] = ...) -> None: ...

class TrainingCompleted(_message.Message):
    __slots__ = ("job_id", "artifact_uri", "artifact_sha256", "steps", "final_loss", "epsilon_spent", "duration_seconds", "eval_loss", "initial_eval_loss", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_EVAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    artifact_uri: str
    artifact_sha256: str
    steps: int
    final_loss: float
    epsilon_spent: float
    duration_seconds: float
    eval_loss: float
    initial_eval_loss: float
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., steps: _Optional[int] = ..., final_loss: _Optional[float] = ..., epsilon_spent: _Optional[float] = ..., duration_seconds: _Optional[float] = ..., eval_loss: _Optional[float] = ..., initial_eval_loss: _Optional[float] = ..., attempt: _Optional[int] = ...) -> None: ...

class TrainingHeartbeat(_message.Message):
    __slots__ = ("job_id", "worker_id", "step", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    worker_id: str
    step: int
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., worker_id: _Optional[str] = ..., step: _Optional[int] = ..., attempt: _Optional[int] = ...) -> None: ...

class TrainingPreempted(_message.Message):
    __slots__ = ("job_id", "checkpoint_id", "step", "worker_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    checkpoint_id: str
    step: int
    worker_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., checkpoint_id: _Optional[str] = ..., step: _Optional[int] = ..., worker_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class TrainingFailed(_message.Message):
    __slots__ = ("job_id", "error_code", "reason", "retryable", "step", "attempt", "log_uri")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LOG_URI_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    error_code: str
    reason: str
    retryable: bool
    step: int
    attempt: int
    log_uri: str
    def __init__(self, job_id: _Optional[str] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ..., retryable: _Optional[bool] = ..., step: _Optional[int] = ..., attempt: _Optional[int] = ..., log_uri: _Optional[str] = ...) -> None: ...

class TrainingAttemptClaimed(_message.Message):
    __slots__ = ("job_id", "attempt", "worker_id", "claim_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    worker_id: str
    claim_id: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., claim_id: _Optional[str] = ...) -> None: ...

class TrainingAttemptStop(_message.Message):
    __slots__ = ("job_id", "attempt", "reason", "worker_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    reason: str
    worker_id: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ModelVersionRegistered(_message.Message):
    __slots__ = ("model_version_id", "model_name", "version", "kind", "artifact_uri", "artifact_sha256", "job_id", "base_model_id", "base_model_sha256", "dataset_version_id", "dataset_manifest_sha256", "config_sha256", "code_version", "metrics", "dataset_id", "evaluation_suite_id", "eval_gates", "dataset_uri")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    EVAL_GATES_FIELD_NUMBER: _ClassVar[int]
    DATASET_URI_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    model_name: str
    version: int
    kind: str
    artifact_uri: str
    artifact_sha256: str
    job_id: str
    base_model_id: str
    base_model_sha256: str
    dataset_version_id: str
    dataset_manifest_sha256: str
    config_sha256: str
    code_version: str
    metrics: _containers.ScalarMap[str, float]
    dataset_id: str
    evaluation_suite_id: str
    eval_gates: EvalGates
    dataset_uri: str
    def __init__(self, model_version_id: _Optional[str] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., kind: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., job_id: _Optional[str] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., dataset_manifest_sha256: _Optional[str] = ..., config_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., dataset_id: _Optional[str] = ..., evaluation_suite_id: _Optional[str] = ..., eval_gates: _Optional[_Union[EvalGates, _Mapping]] = ..., dataset_uri: _Optional[str] = ...) -> None: ...

class ModelAliasMoved(_message.Message):
    __slots__ = ("model_name", "alias", "model_version_id", "previous_model_version_id", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    model_version_id: str
    previous_model_version_id: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., model_version_id: _Optional[str] = ..., previous_model_version_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PrivacyBudgetReserved(_message.Message):
    __slots__ = ("job_id", "month", "epsilon", "delta", "monthly_cap")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_CAP_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    month: str
    epsilon: float
    delta: float
    monthly_cap: float
    def __init__(self, job_id: _Optional[str] = ..., month: _Optional[str] = ..., epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., monthly_cap: _Optional[float] = ...) -> None: ...

class PrivacyBudgetSettled(_message.Message):
    __slots__ = ("job_id", "month", "epsilon_spent", "outcome")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    month: str
    epsilon_spent: float
    outcome: str
    def __init__(self, job_id: _Optional[str] = ..., month: _Optional[str] = ..., epsilon_spent: _Optional[float] = ..., outcome: _Optional[str] = ...) -> None: ...

class EvalGates(_message.Message):
    __slots__ = ("win_rate_vs_base_min", "toxicity_max_delta", "forgetting_max", "pii_leakage_max", "canary_exposure_max", "extraction_max", "domain_delta_min")
    WIN_RATE_VS_BASE_MIN_FIELD_NUMBER: _ClassVar[int]
    TOXICITY_MAX_DELTA_FIELD_NUMBER: _ClassVar[int]
    FORGETTING_MAX_FIELD_NUMBER: _ClassVar[int]
    PII_LEAKAGE_MAX_FIELD_NUMBER: _ClassVar[int]
    CANARY_EXPOSURE_MAX_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_MAX_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_DELTA_MIN_FIELD_NUMBER: _ClassVar[int]
    win_rate_vs_base_min: float
    toxicity_max_delta: float
    forgetting_max: float
    pii_leakage_max: float
    canary_exposure_max: float
    extraction_max: float
    domain_delta_min: float
    def __init__(self, win_rate_vs_base_min: _Optional[float] = ..., toxicity_max_delta: _Optional[float] = ..., forgetting_max: _Optional[float] = ..., pii_leakage_max: _Optional[float] = ..., canary_exposure_max: _Optional[float] = ..., extraction_max: _Optional[float] = ..., domain_delta_min: _Optional[float] = ...) -> None: ...

class GenerationSettings(_message.Message):
    __slots__ = ("max_new_tokens", "batch_size", "temperature", "seed")
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    max_new_tokens: int
    batch_size: int
    temperature: float
    seed: int
    def __init__(self, max_new_tokens: _Optional[int] = ..., batch_size: _Optional[int] = ..., temperature: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class EvalSuiteCreated(_message.Message):
    __slots__ = ("suite_id", "name", "uri", "manifest_sha256", "item_count", "counts", "dataset_version_id", "dataset_manifest_sha256", "canaries")
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
    DATASET_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CANARIES_FIELD_NUMBER: _ClassVar[int]
    suite_id: str
    name: str
    uri: str
    manifest_sha256: str
    item_count: int
    counts: _containers.ScalarMap[str, int]
    dataset_version_id: str
    dataset_manifest_sha256: str
    canaries: int
    def __init__(self, suite_id: _Optional[str] = ..., name: _Optional[str] = ..., uri: _Optional[str] = ..., manifest_sha256: _Optional[str] = ..., item_count: _Optional[int] = ..., counts: _Optional[_Mapping[str, int]] = ..., dataset_version_id: _Optional[str] = ..., dataset_manifest_sha256: _Optional[str] = ..., canaries: _Optional[int] = ...) -> None: ...

class EvalRequested(_message.Message):
    __slots__ = ("eval_id", "job_id", "model_version_id", "suite_id", "suite_uri", "suite_manifest_sha256", "item_count", "shard_count", "shard_size", "base_model_id", "base_model_sha256", "artifact_uri", "artifact_sha256", "artifact_kind", "judge", "gates", "generation", "trigger", "judge_model_sha256")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_URI_FIELD_NUMBER: _ClassVar[int]
    SUITE_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARD_COUNT_FIELD_NUMBER: _ClassVar[int]
    SHARD_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_KIND_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    job_id: str
    model_version_id: str
    suite_id: str
    suite_uri: str
    suite_manifest_sha256: str
    item_count: int
    shard_count: int
    shard_size: int
    base_model_id: str
    base_model_sha256: str
    artifact_uri: str
    artifact_sha256: str
    artifact_kind: str
    judge: str
    gates: EvalGates
    generation: GenerationSettings
    trigger: str
    judge_model_sha256: str
    def __init__(self, eval_id: _Optional[str] = ..., job_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., suite_id: _Optional[str] = ..., suite_uri: _Optional[str] = ..., suite_manifest_sha256: _Optional[str] = ..., item_count: _Optional[int] = ..., shard_count: _Optional[int] = ..., shard_size: _Optional[int] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., artifact_kind: _Optional[str] = ..., judge: _Optional[str] = ..., gates: _Optional[_Union[EvalGates, _Mapping]] = ..., generation: _Optional[_Union[GenerationSettings, _Mapping]] = ..., trigger: _Optional[str] = ..., judge_model_sha256: _Optional[str] = ...) -> None: ...

class EvalShardScheduled(_message.Message):
    __slots__ = ("eval_id", "shard", "first_item", "item_count", "suite_uri", "suite_manifest_sha256", "base_model_id", "base_model_sha256", "artifact_uri", "artifact_sha256", "artifact_kind", "judge", "generation", "outputs_uri", "judge_model_sha256")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    FIRST_ITEM_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    SUITE_URI_FIELD_NUMBER: _ClassVar[int]
    SUITE_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_URI_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_KIND_FIELD_NUMBER: _ClassVar[int]
    JUDGE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_URI_FIELD_NUMBER: _ClassVar[int]
    JUDGE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    shard: int
    first_item: int
    item_count: int
    suite_uri: str
    suite_manifest_sha256: str
    base_model_id: str
    base_model_sha256: str
    artifact_uri: str
    artifact_sha256: str
    artifact_kind: str
    judge: str
    generation: GenerationSettings
    outputs_uri: str
    judge_model_sha256: str
    def __init__(self, eval_id: _Optional[str] = ..., shard: _Optional[int] = ..., first_item: _Optional[int] = ..., item_count: _Optional[int] = ..., suite_uri: _Optional[str] = ..., suite_manifest_sha256: _Optional[str] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., artifact_kind: _Optional[str] = ..., judge: _Optional[str] = ..., generation: _Optional[_Union[GenerationSettings, _Mapping]] = ..., outputs_uri: _Optional[str] = ..., judge_model_sha256: _Optional[str] = ...) -> None: ...

class EvalShardCompleted(_message.Message):
    __slots__ = ("eval_id", "shard", "outputs_uri", "outputs_sha256", "items", "seconds", "worker_id", "generated_tokens")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_URI_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    shard: int
    outputs_uri: str
    outputs_sha256: str
    items: int
    seconds: float
    worker_id: str
    generated_tokens: int
    def __init__(self, eval_id: _Optional[str] = ..., shard: _Optional[int] = ..., outputs_uri: _Optional[str] = ..., outputs_sha256: _Optional[str] = ..., items: _Optional[int] = ..., seconds: _Optional[float] = ..., worker_id: _Optional[str] = ..., generated_tokens: _Optional[int] = ...) -> None: ...

class EvalShardFailed(_message.Message):
    __slots__ = ("eval_id", "shard", "error_code", "reason", "worker_id")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    shard: int
    error_code: str
    reason: str
    worker_id: str
    def __init__(self, eval_id: _Optional[str] = ..., shard: _Optional[int] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ..., worker_id: _Optional[str] = ...) -> None: ...

class MetricEstimate(_message.Message):
    __slots__ = ("name", "candidate", "reference", "delta", "ci_low", "ci_high", "n", "higher_is_better", "candidate_ci_low", "candidate_ci_high")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    N_FIELD_NUMBER: _ClassVar[int]
    HIGHER_IS_BETTER_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_CI_LOW_FIELD_NUMBER: _ClassVar[int]
    CANDIDATE_CI_HIGH_FIELD_NUMBER: _ClassVar[int]
    name: str
    candidate: float
    reference: float
    delta: float
    ci_low: float
    ci_high: float
    n: int
    higher_is_better: bool
    candidate_ci_low: float
    candidate_ci_high: float
    def __init__(self, name: _Optional[str] = ..., candidate: _Optional[float] = ..., reference: _Optional[float] = ..., delta: _Optional[float] = ..., ci_low: _Optional[float] = ..., ci_high: _Optional[float] = ..., n: _Optional[int] = ..., higher_is_better: _Optional[bool] = ..., candidate_ci_low: _Optional[float] = ..., candidate_ci_high: _Optional[float] = ...) -> None: ...

class GateResult(_message.Message):
    __slots__ = ("gate", "passed", "threshold", "bound", "bound_kind", "margin", "reason")
    GATE_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    BOUND_FIELD_NUMBER: _ClassVar[int]
    BOUND_KIND_FIELD_NUMBER: _ClassVar[int]
    MARGIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    gate: str
    passed: bool
    threshold: float
    bound: float
    bound_kind: str
    margin: float
    reason: str
    def __init__(self, gate: _Optional[str] = ..., passed: _Optional[bool] = ..., threshold: _Optional[float] = ..., bound: _Optional[float] = ..., bound_kind: _Optional[str] = ..., margin: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class EvalCompleted(_message.Message):
    __slots__ = ("eval_id", "model_version_id", "suite_id", "metrics", "passed", "report_uri", "estimates", "gates", "reason", "job_id", "items", "shards", "results_uri", "results_sha256", "confidence")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    SUITE_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    REPORT_URI_FIELD_NUMBER: _ClassVar[int]
    ESTIMATES_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    SHARDS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_URI_FIELD_NUMBER: _ClassVar[int]
    RESULTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    model_version_id: str
    suite_id: str
    metrics: _containers.ScalarMap[str, float]
    passed: bool
    report_uri: str
    estimates: _containers.RepeatedCompositeFieldContainer[MetricEstimate]
    gates: _containers.RepeatedCompositeFieldContainer[GateResult]
    reason: str
    job_id: str
    items: int
    shards: int
    results_uri: str
    results_sha256: str
    confidence: float
    def __init__(self, eval_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., suite_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., passed: _Optional[bool] = ..., report_uri: _Optional[str] = ..., estimates: _Optional[_Iterable[_Union[MetricEstimate, _Mapping]]] = ..., gates: _Optional[_Iterable[_Union[GateResult, _Mapping]]] = ..., reason: _Optional[str] = ..., job_id: _Optional[str] = ..., items: _Optional[int] = ..., shards: _Optional[int] = ..., results_uri: _Optional[str] = ..., results_sha256: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class EvalFailed(_message.Message):
    __slots__ = ("eval_id", "model_version_id", "error_code", "reason", "shard")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    model_version_id: str
    error_code: str
    reason: str
    shard: int
    def __init__(self, eval_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ..., shard: _Optional[int] = ...) -> None: ...

class TrafficGateLimits(_message.Message):
    __slots__ = ("max_error_rate", "p95_latency_ms", "min_requests", "max_toxic_rate", "max_leaking_answers")
    MAX_ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOXIC_RATE_FIELD_NUMBER: _ClassVar[int]
    MAX_LEAKING_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    max_error_rate: float
    p95_latency_ms: float
    min_requests: int
    max_toxic_rate: float
    max_leaking_answers: int
    def __init__(self, max_error_rate: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., min_requests: _Optional[int] = ..., max_toxic_rate: _Optional[float] = ..., max_leaking_answers: _Optional[int] = ...) -> None: ...

class DeploymentRequested(_message.Message):
    __slots__ = ("deployment_id", "model_version_id", "environment", "strategy", "canary_steps_percent", "requested_by", "drain_seconds", "rollback_on_regression", "metric_gates", "endpoint_name", "verify_seconds", "eval_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANARY_STEPS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    DRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ON_REGRESSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_GATES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version_id: str
    environment: str
    strategy: RolloutStrategy
    canary_steps_percent: _containers.RepeatedScalarFieldContainer[int]
    requested_by: str
    drain_seconds: int
    rollback_on_regression: bool
    metric_gates: TrafficGateLimits
    endpoint_name: str
    verify_seconds: int
    eval_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., strategy: _Optional[_Union[RolloutStrategy, str]] = ..., canary_steps_percent: _Optional[_Iterable[int]] = ..., requested_by: _Optional[str] = ..., drain_seconds: _Optional[int] = ..., rollback_on_regression: _Optional[bool] = ..., metric_gates: _Optional[_Union[TrafficGateLimits, _Mapping]] = ..., endpoint_name: _Optional[str] = ..., verify_seconds: _Optional[int] = ..., eval_id: _Optional[str] = ...) -> None: ...

class DeploymentApproved(_message.Message):
    __slots__ = ("deployment_id", "approver", "gates_passed")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    GATES_PASSED_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    approver: str
    gates_passed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deployment_id: _Optional[str] = ..., approver: _Optional[str] = ..., gates_passed: _Optional[_Iterable[str]] = ...) -> None: ...

class PoolHealthy(_message.Message):
    __slots__ = ("deployment_id", "pool")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    pool: str
    def __init__(self, deployment_id: _Optional[str] = ..., pool: _Optional[str] = ...) -> None: ...

class ShadowStarted(_message.Message):
    __slots__ = ("deployment_id", "pool")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    pool: str
    def __init__(self, deployment_id: _Optional[str] = ..., pool: _Optional[str] = ...) -> None: ...

class DeploymentVerified(_message.Message):
    __slots__ = ("deployment_id", "pool", "requests", "error_rate", "p95_latency_ms")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    pool: str
    requests: int
    error_rate: float
    p95_latency_ms: float
    def __init__(self, deployment_id: _Optional[str] = ..., pool: _Optional[str] = ..., requests: _Optional[int] = ..., error_rate: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ...) -> None: ...

class ShadowJudged(_message.Message):
    __slots__ = ("deployment_id", "pool", "requests", "error_rate", "p95_latency_ms", "toxic_answers", "leaking_answers", "passed", "gates_broken", "reason")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    P95_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    TOXIC_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    LEAKING_ANSWERS_FIELD_NUMBER: _ClassVar[int]
    PASSED_FIELD_NUMBER: _ClassVar[int]
    GATES_BROKEN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    pool: str
    requests: int
    error_rate: float
    p95_latency_ms: float
    toxic_answers: int
    leaking_answers: int
    passed: bool
    gates_broken: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, deployment_id: _Optional[str] = ..., pool: _Optional[str] = ..., requests: _Optional[int] = ..., error_rate: _Optional[float] = ..., p95_latency_ms: _Optional[float] = ..., toxic_answers: _Optional[int] = ..., leaking_answers: _Optional[int] = ..., passed: _Optional[bool] = ..., gates_broken: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class DeploymentFailed(_message.Message):
    __slots__ = ("deployment_id", "error_code", "reason")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    error_code: str
    reason: str
    def __init__(self, deployment_id: _Optional[str] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PoolDeployed(_message.Message):
    __slots__ = ("deployment_id", "pool", "model_version_id", "endpoint", "replicas")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    pool: str
    model_version_id: str
    endpoint: str
    replicas: int
    def __init__(self, deployment_id: _Optional[str] = ..., pool: _Optional[str] = ..., model_version_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., replicas: _Optional[int] = ...) -> None: ...

class TrafficFlipped(_message.Message):
    __slots__ = ("deployment_id", "from_pool", "to_pool", "weight_percent", "model_version_id", "previous_model_version_id", "environment", "endpoint_name", "routing_version")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_POOL_FIELD_NUMBER: _ClassVar[int]
    TO_POOL_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    from_pool: str
    to_pool: str
    weight_percent: int
    model_version_id: str
    previous_model_version_id: str
    environment: str
    endpoint_name: str
    routing_version: int
    def __init__(self, deployment_id: _Optional[str] = ..., from_pool: _Optional[str] = ..., to_pool: _Optional[str] = ..., weight_percent: _Optional[int] = ..., model_version_id: _Optional[str] = ..., previous_model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., routing_version: _Optional[int] = ...) -> None: ...

class RolledBack(_message.Message):
    __slots__ = ("deployment_id", "to_pool", "trigger", "reason", "model_version_id", "from_model_version_id", "environment", "endpoint_name", "automatic")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_POOL_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTOMATIC_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    to_pool: str
    trigger: str
    reason: str
    model_version_id: str
    from_model_version_id: str
    environment: str
    endpoint_name: str
    automatic: bool
    def __init__(self, deployment_id: _Optional[str] = ..., to_pool: _Optional[str] = ..., trigger: _Optional[str] = ..., reason: _Optional[str] = ..., model_version_id: _Optional[str] = ..., from_model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., automatic: _Optional[bool] = ...) -> None: ...

class AccessDenied(_message.Message):
    __slots__ = ("principal", "method", "resource", "reason", "rule")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    principal: str
    method: str
    resource: str
    reason: str
    rule: str
    def __init__(self, principal: _Optional[str] = ..., method: _Optional[str] = ..., resource: _Optional[str] = ..., reason: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class BreakGlassUsed(_message.Message):
    __slots__ = ("principal", "method", "issuer")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    principal: str
    method: str
    issuer: str
    def __init__(self, principal: _Optional[str] = ..., method: _Optional[str] = ..., issuer: _Optional[str] = ...) -> None: ...

class AccessAllowed(_message.Message):
    __slots__ = ("principal", "method", "resource", "issuer", "via", "roles", "outcome", "duration_ms", "break_glass")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    BREAK_GLASS_FIELD_NUMBER: _ClassVar[int]
    principal: str
    method: str
    resource: str
    issuer: str
    via: str
    roles: _containers.RepeatedScalarFieldContainer[str]
    outcome: str
    duration_ms: int
    break_glass: bool
    def __init__(self, principal: _Optional[str] = ..., method: _Optional[str] = ..., resource: _Optional[str] = ..., issuer: _Optional[str] = ..., via: _Optional[str] = ..., roles: _Optional[_Iterable[str]] = ..., outcome: _Optional[str] = ..., duration_ms: _Optional[int] = ..., break_glass: _Optional[bool] = ...) -> None: ...
