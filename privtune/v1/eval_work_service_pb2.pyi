from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class ClaimEvalShardRequest(_message.Message):
    __slots__ = ("eval_id", "shard", "worker_id", "claim_id", "lease_seconds")
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    SHARD_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CLAIM_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    eval_id: str
    shard: int
    worker_id: str
    claim_id: str
    lease_seconds: int
    def __init__(self, eval_id: _Optional[str] = ..., shard: _Optional[int] = ..., worker_id: _Optional[str] = ..., claim_id: _Optional[str] = ..., lease_seconds: _Optional[int] = ...) -> None: ...

class ClaimEvalShardResponse(_message.Message):
    __slots__ = ("granted", "reason", "finished")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    reason: str
    finished: bool
    def __init__(self, granted: _Optional[bool] = ..., reason: _Optional[str] = ..., finished: _Optional[bool] = ...) -> None: ...
