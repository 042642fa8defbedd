from privtune.v1 import events_pb2 as _events_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClaimEvalShardRequest(_message.Message):
    __slots__ = ("eval_id", "shard", "worker_id", "claim_id", "lease_seconds", "next_unclaimed")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_UNCLAIMED_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    shard: int
    worker_id: str
    claim_id: str
    lease_seconds: int
    next_unclaimed: bool
    def __init__(self, eval_id: _Optional[str] = ..., shard: _Optional[int] = ..., worker_id: _Optional[str] = ..., claim_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ..., next_unclaimed: _Optional[bool] = ...) -> None: ...

class ClaimEvalShardResponse(_message.Message):
    __slots__ = ("granted", "reason", "finished", "command")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    reason: str
    finished: bool
    command: _events_pb2.EventEnvelope
    def __init__(self, granted: _Optional[bool] = ..., reason: _Optional[str] = ..., finished: _Optional[bool] = ..., command: _Optional[_Union[_events_pb2.EventEnvelope, _Mapping]] = ...) -> None: ...
