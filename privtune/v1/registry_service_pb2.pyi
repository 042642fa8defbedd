import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from privtune.v1 import training_service_pb2 as _training_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelArtifactKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_ARTIFACT_KIND_UNSPECIFIED: _ClassVar[ModelArtifactKind]
    MODEL_ARTIFACT_KIND_ADAPTER: _ClassVar[ModelArtifactKind]
    MODEL_ARTIFACT_KIND_MERGED: _ClassVar[ModelArtifactKind]
    MODEL_ARTIFACT_KIND_FULL: _ClassVar[ModelArtifactKind]
MODEL_ARTIFACT_KIND_UNSPECIFIED: ModelArtifactKind
MODEL_ARTIFACT_KIND_ADAPTER: ModelArtifactKind
MODEL_ARTIFACT_KIND_MERGED: ModelArtifactKind
MODEL_ARTIFACT_KIND_FULL: ModelArtifactKind

class ModelVersion(_message.Message):
    __slots__ = ("model_version_id", "model_name", "version", "artifact_uri", "artifact_sha256", "job_id", "base_model_id", "base_model_sha256", "dataset_version_id", "dataset_manifest_sha256", "config_sha256", "code_version", "metrics", "aliases", "evaluation", "evaluation_passed", "registered_by", "registered_at", "kind")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class EvaluationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
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
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_FIELD_NUMBER: _ClassVar[int]
    EVALUATION_PASSED_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_BY_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    model_name: str
    version: int
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
    aliases: _containers.RepeatedScalarFieldContainer[str]
    evaluation: _containers.ScalarMap[str, float]
    evaluation_passed: bool
    registered_by: str
    registered_at: _timestamp_pb2.Timestamp
    kind: ModelArtifactKind
    def __init__(self, model_version_id: _Optional[str] = ..., model_name: _Optional[str] = ..., version: _Optional[int] = ..., artifact_uri: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., job_id: _Optional[str] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., dataset_manifest_sha256: _Optional[str] = ..., config_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., aliases: _Optional[_Iterable[str]] = ..., evaluation: _Optional[_Mapping[str, float]] = ..., evaluation_passed: _Optional[bool] = ..., registered_by: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[_Union[ModelArtifactKind, str]] = ...) -> None: ...

class ListModelVersionsRequest(_message.Message):
    __slots__ = ("model_name", "page_size", "page_token")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    page_size: int
    page_token: str
    def __init__(self, model_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListModelVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersion]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetModelVersionRequest(_message.Message):
    __slots__ = ("model_version_id",)
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    def __init__(self, model_version_id: _Optional[str] = ...) -> None: ...

class GetModelVersionResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class SetModelAliasRequest(_message.Message):
    __slots__ = ("model_name", "alias", "model_version_id", "reason")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    model_version_id: str
    reason: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., model_version_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetModelAliasResponse(_message.Message):
    __slots__ = ("model_version",)
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model_version: ModelVersion
    def __init__(self, model_version: _Optional[_Union[ModelVersion, _Mapping]] = ...) -> None: ...

class AliasChange(_message.Message):
    __slots__ = ("model_name", "alias", "model_version_id", "previous_model_version_id", "actor", "reason", "changed_at")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    model_version_id: str
    previous_model_version_id: str
    actor: str
    reason: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ..., model_version_id: _Optional[str] = ..., previous_model_version_id: _Optional[str] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListAliasHistoryRequest(_message.Message):
    __slots__ = ("model_name", "alias")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    alias: str
    def __init__(self, model_name: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...

class ListAliasHistoryResponse(_message.Message):
    __slots__ = ("changes",)
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[AliasChange]
    def __init__(self, changes: _Optional[_Iterable[_Union[AliasChange, _Mapping]]] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("deployment_id", "model_version_id", "job_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version_id: str
    job_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., job_id: _Optional[str] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("lineage",)
    LINEAGE_FIELD_NUMBER: _ClassVar[int]
    lineage: Lineage
    def __init__(self, lineage: _Optional[_Union[Lineage, _Mapping]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("deployment_id", "model_version_id", "artifact_sha256", "job_id", "config_sha256", "config_json", "code_version", "library_versions", "seed", "hardware", "base_model_id", "base_model_sha256", "dataset_version_id", "dataset_manifest_sha256", "curation_job_id", "curation_config_sha256", "dataset_id", "raw_dataset_checksum_sha256", "raw_dataset_storage_uri", "requested_by", "epsilon_spent")
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_SHA256_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    CONFIG_JSON_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    CURATION_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    CURATION_CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    RAW_DATASET_CHECKSUM_SHA256_FIELD_NUMBER: _ClassVar[int]
    RAW_DATASET_STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    EPSILON_SPENT_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version_id: str
    artifact_sha256: str
    job_id: str
    config_sha256: str
    config_json: str
    code_version: str
    library_versions: _containers.ScalarMap[str, str]
    seed: int
    hardware: str
    base_model_id: str
    base_model_sha256: str
    dataset_version_id: str
    dataset_manifest_sha256: str
    curation_job_id: str
    curation_config_sha256: str
    dataset_id: str
    raw_dataset_checksum_sha256: str
    raw_dataset_storage_uri: str
    requested_by: str
    epsilon_spent: float
    def __init__(self, deployment_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., artifact_sha256: _Optional[str] = ..., job_id: _Optional[str] = ..., config_sha256: _Optional[str] = ..., config_json: _Optional[str] = ..., code_version: _Optional[str] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ..., hardware: _Optional[str] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., dataset_version_id: _Optional[str] = ..., dataset_manifest_sha256: _Optional[str] = ..., curation_job_id: _Optional[str] = ..., curation_config_sha256: _Optional[str] = ..., dataset_id: _Optional[str] = ..., raw_dataset_checksum_sha256: _Optional[str] = ..., raw_dataset_storage_uri: _Optional[str] = ..., requested_by: _Optional[str] = ..., epsilon_spent: _Optional[float] = ...) -> None: ...

class RunMetricPoint(_message.Message):
    __slots__ = ("step", "value")
    STEP_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    step: int
    value: float
    def __init__(self, step: _Optional[int] = ..., value: _Optional[float] = ...) -> None: ...

class RunMetricSeries(_message.Message):
    __slots__ = ("name", "points")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    points: _containers.RepeatedCompositeFieldContainer[RunMetricPoint]
    def __init__(self, name: _Optional[str] = ..., points: _Optional[_Iterable[_Union[RunMetricPoint, _Mapping]]] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "name", "params", "metrics", "series", "tags", "dataset_manifest_sha256", "base_model_id", "base_model_sha256", "code_version", "library_versions", "seed", "hardware", "started_at", "ended_at", "state")
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LibraryVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SERIES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DATASET_MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    BASE_MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    CODE_VERSION_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    name: str
    params: _containers.ScalarMap[str, str]
    metrics: _containers.ScalarMap[str, float]
    series: _containers.RepeatedCompositeFieldContainer[RunMetricSeries]
    tags: _containers.ScalarMap[str, str]
    dataset_manifest_sha256: str
    base_model_id: str
    base_model_sha256: str
    code_version: str
    library_versions: _containers.ScalarMap[str, str]
    seed: int
    hardware: str
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    state: _training_service_pb2.TrainingJobState
    def __init__(self, run_id: _Optional[str] = ..., name: _Optional[str] = ..., params: _Optional[_Mapping[str, str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., series: _Optional[_Iterable[_Union[RunMetricSeries, _Mapping]]] = ..., tags: _Optional[_Mapping[str, str]] = ..., dataset_manifest_sha256: _Optional[str] = ..., base_model_id: _Optional[str] = ..., base_model_sha256: _Optional[str] = ..., code_version: _Optional[str] = ..., library_versions: _Optional[_Mapping[str, str]] = ..., seed: _Optional[int] = ..., hardware: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state: _Optional[_Union[_training_service_pb2.TrainingJobState, str]] = ...) -> None: ...

class GetRunRequest(_message.Message):
    __slots__ = ("run_id",)
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    def __init__(self, run_id: _Optional[str] = ...) -> None: ...

class GetRunResponse(_message.Message):
    __slots__ = ("run",)
    RUN_FIELD_NUMBER: _ClassVar[int]
    run: Run
    def __init__(self, run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ListRunsRequest(_message.Message):
    __slots__ = ("tags", "page_size", "page_token")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.ScalarMap[str, str]
    page_size: int
    page_token: str
    def __init__(self, tags: _Optional[_Mapping[str, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListRunsResponse(_message.Message):
    __slots__ = ("runs", "next_page_token")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    next_page_token: str
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CompareRunsRequest(_message.Message):
    __slots__ = ("run_ids",)
    RUN_IDS_FIELD_NUMBER: _ClassVar[int]
    run_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, run_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class CompareRunsResponse(_message.Message):
    __slots__ = ("runs", "differing_params", "metric_names")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    DIFFERING_PARAMS_FIELD_NUMBER: _ClassVar[int]
    METRIC_NAMES_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[Run]
    differing_params: _containers.RepeatedScalarFieldContainer[str]
    metric_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, runs: _Optional[_Iterable[_Union[Run, _Mapping]]] = ..., differing_params: _Optional[_Iterable[str]] = ..., metric_names: _Optional[_Iterable[str]] = ...) -> None: ...
