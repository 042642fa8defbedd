import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from privtune.v1 import curation_config_pb2 as _curation_config_pb2
from privtune.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CurationJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURATION_JOB_STATE_UNSPECIFIED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_REQUESTED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_SUCCEEDED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_FAILED: _ClassVar[CurationJobState]

class CurationErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURATION_ERROR_CODE_UNSPECIFIED: _ClassVar[CurationErrorCode]
    CURATION_ERROR_CODE_INVALID_ARGUMENT: _ClassVar[CurationErrorCode]
    CURATION_ERROR_CODE_NOT_FOUND: _ClassVar[CurationErrorCode]
    CURATION_ERROR_CODE_FAILED_PRECONDITION: _ClassVar[CurationErrorCode]
    CURATION_ERROR_CODE_PERMISSION_DENIED: _ClassVar[CurationErrorCode]
    CURATION_ERROR_CODE_INTERNAL: _ClassVar[CurationErrorCode]
CURATION_JOB_STATE_UNSPECIFIED: CurationJobState
CURATION_JOB_STATE_REQUESTED: CurationJobState
CURATION_JOB_STATE_SUCCEEDED: CurationJobState
CURATION_JOB_STATE_FAILED: CurationJobState
CURATION_ERROR_CODE_UNSPECIFIED: CurationErrorCode
CURATION_ERROR_CODE_INVALID_ARGUMENT: CurationErrorCode
CURATION_ERROR_CODE_NOT_FOUND: CurationErrorCode
CURATION_ERROR_CODE_FAILED_PRECONDITION: CurationErrorCode
CURATION_ERROR_CODE_PERMISSION_DENIED: CurationErrorCode
CURATION_ERROR_CODE_INTERNAL: CurationErrorCode

class CurationJob(_message.Message):
    __slots__ = ("job_id", "dataset_id", "state", "dataset_version_id", "reason", "created_at", "updated_at", "recipe", "error_code", "config_sha256")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SHA256_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset_id: str
    state: CurationJobState
    dataset_version_id: str
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    recipe: _curation_config_pb2.CurationRecipe
    error_code: CurationErrorCode
    config_sha256: str
    def __init__(self, job_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., state: _Optional[_Union[CurationJobState, str]] = ..., dataset_version_id: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., recipe: _Optional[_Union[_curation_config_pb2.CurationRecipe, str]] = ..., error_code: _Optional[_Union[CurationErrorCode, str]] = ..., config_sha256: _Optional[str] = ...) -> None: ...

class CreateCurationJobRequest(_message.Message):
    __slots__ = ("dataset_id", "request_id", "config")
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    request_id: str
    config: _curation_config_pb2.CurationConfig
    def __init__(self, dataset_id: _Optional[str] = ..., request_id: _Optional[str] = ..., config: _Optional[_Union[_curation_config_pb2.CurationConfig, _Mapping]] = ...) -> None: ...

class CreateCurationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: CurationJob
    def __init__(self, job: _Optional[_Union[CurationJob, _Mapping]] = ...) -> None: ...

class GetCurationJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class GetCurationJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: CurationJob
    def __init__(self, job: _Optional[_Union[CurationJob, _Mapping]] = ...) -> None: ...

class ListCurationJobsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "dataset_id")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    dataset_id: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., dataset_id: _Optional[str] = ...) -> None: ...

class ListCurationJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[CurationJob]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[CurationJob, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchCurationJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchCurationJobResponse(_message.Message):
    __slots__ = ("event",)
    EVENT_FIELD_NUMBER: _ClassVar[int]
    event: _events_pb2.EventEnvelope
    def __init__(self, event: _Optional[_Union[_events_pb2.EventEnvelope, _Mapping]] = ...) -> None: ...
