from privtune.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TrainingExecutor(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRAINING_EXECUTOR_UNSPECIFIED: _ClassVar[TrainingExecutor]
    TRAINING_EXECUTOR_LOCAL: _ClassVar[TrainingExecutor]
    TRAINING_EXECUTOR_KUBERNETES: _ClassVar[TrainingExecutor]
TRAINING_EXECUTOR_UNSPECIFIED: TrainingExecutor
TRAINING_EXECUTOR_LOCAL: TrainingExecutor
TRAINING_EXECUTOR_KUBERNETES: TrainingExecutor

class ClaimAttemptRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "worker_id", "claim_id", "executor")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTOR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    worker_id: str
    claim_id: str
    executor: TrainingExecutor
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., claim_id: _Optional[str] = ..., executor: _Optional[_Union[TrainingExecutor, str]] = ...) -> None: ...

class ClaimAttemptResponse(_message.Message):
    __slots__ = ("granted", "reason", "request", "resume_from_checkpoint_id", "correlation_id")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    reason: str
    request: _events_pb2.TrainingRequested
    resume_from_checkpoint_id: str
    correlation_id: str
    def __init__(self, granted: _Optional[bool] = ..., reason: _Optional[str] = ..., request: _Optional[_Union[_events_pb2.TrainingRequested, _Mapping]] = ..., resume_from_checkpoint_id: _Optional[str] = ..., correlation_id: _Optional[str] = ...) -> None: ...
