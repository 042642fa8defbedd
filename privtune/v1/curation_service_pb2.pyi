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

class CurationJobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CURATION_JOB_STATE_UNSPECIFIED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_REQUESTED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_SUCCEEDED: _ClassVar[CurationJobState]
    CURATION_JOB_STATE_FAILED: _ClassVar[CurationJobState]
CURATION_JOB_STATE_UNSPECIFIED: CurationJobState
CURATION_JOB_STATE_REQUESTED: CurationJobState
CURATION_JOB_STATE_SUCCEEDED: CurationJobState
CURATION_JOB_STATE_FAILED: CurationJobState

class CurationJob(_message.Message):
    __slots__ = ("job_id", "dataset_id", "recipe", "state", "dataset_version_id", "error_code", "reason", "created_at", "updated_at")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DATASET_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    dataset_id: str
    recipe: str
    state: CurationJobState
    dataset_version_id: str
    error_code: str
    reason: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, job_id: _Optional[str] = ..., dataset_id: _Optional[str] = ..., recipe: _Optional[str] = ..., state: _Optional[_Union[CurationJobState, str]] = ..., dataset_version_id: _Optional[str] = ..., error_code: _Optional[str] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCurationJobRequest(_message.Message):
    __slots__ = ("dataset_id", "recipe", "config", "request_id")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    DATASET_ID_FIELD_NUMBER: _ClassVar[int]
    RECIPE_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    dataset_id: str
    recipe: str
    config: _containers.ScalarMap[str, str]
    request_id: str
    def __init__(self, dataset_id: _Optional[str] = ..., recipe: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetCurationJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

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
