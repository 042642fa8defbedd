import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditRecord(_message.Message):
    __slots__ = ("tenant_id", "seq", "record_id", "time", "kind", "actor", "resource", "outcome", "correlation_id", "attributes", "prev_hash", "hash", "canonical_json")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_JSON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    seq: int
    record_id: str
    time: _timestamp_pb2.Timestamp
    kind: str
    actor: str
    resource: str
    outcome: str
    correlation_id: str
    attributes: _containers.ScalarMap[str, str]
    prev_hash: str
    hash: str
    canonical_json: str
    def __init__(self, tenant_id: _Optional[str] = ..., seq: _Optional[int] = ..., record_id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., actor: _Optional[str] = ..., resource: _Optional[str] = ..., outcome: _Optional[str] = ..., correlation_id: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ..., canonical_json: _Optional[str] = ...) -> None: ...

class SearchAuditRecordsRequest(_message.Message):
    __slots__ = ("tenant_id", "start_time", "end_time", "actor", "resource", "kinds", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    actor: str
    resource: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., resource: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class SearchAuditRecordsResponse(_message.Message):
    __slots__ = ("records", "next_page_token")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    next_page_token: str
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class AuditTreeHead(_message.Message):
    __slots__ = ("tenant_id", "size", "root_hex", "time", "key_id", "signature_hex", "signed_head_json")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROOT_HEX_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_HEX_FIELD_NUMBER: _ClassVar[int]
    SIGNED_HEAD_JSON_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    size: int
    root_hex: str
    time: _timestamp_pb2.Timestamp
    key_id: str
    signature_hex: str
    signed_head_json: str
    def __init__(self, tenant_id: _Optional[str] = ..., size: _Optional[int] = ..., root_hex: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key_id: _Optional[str] = ..., signature_hex: _Optional[str] = ..., signed_head_json: _Optional[str] = ...) -> None: ...

class GetAuditTreeHeadRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetAuditTreeHeadResponse(_message.Message):
    __slots__ = ("head", "records")
    HEAD_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    head: AuditTreeHead
    records: int
    def __init__(self, head: _Optional[_Union[AuditTreeHead, _Mapping]] = ..., records: _Optional[int] = ...) -> None: ...

class GetAuditProofRequest(_message.Message):
    __slots__ = ("tenant_id", "seq", "tree_size", "old_size")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    seq: int
    tree_size: int
    old_size: int
    def __init__(self, tenant_id: _Optional[str] = ..., seq: _Optional[int] = ..., tree_size: _Optional[int] = ..., old_size: _Optional[int] = ...) -> None: ...

class GetAuditProofResponse(_message.Message):
    __slots__ = ("record_hash", "inclusion_path", "consistency_path", "root_hex", "old_root_hex")
    RECORD_HASH_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PATH_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_PATH_FIELD_NUMBER: _ClassVar[int]
    ROOT_HEX_FIELD_NUMBER: _ClassVar[int]
    OLD_ROOT_HEX_FIELD_NUMBER: _ClassVar[int]
    record_hash: str
    inclusion_path: _containers.RepeatedScalarFieldContainer[str]
    consistency_path: _containers.RepeatedScalarFieldContainer[str]
    root_hex: str
    old_root_hex: str
    def __init__(self, record_hash: _Optional[str] = ..., inclusion_path: _Optional[_Iterable[str]] = ..., consistency_path: _Optional[_Iterable[str]] = ..., root_hex: _Optional[str] = ..., old_root_hex: _Optional[str] = ...) -> None: ...

class ListAuditPublicKeysRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AuditPublicKey(_message.Message):
    __slots__ = ("key_id", "public_key_pem")
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_KEY_PEM_FIELD_NUMBER: _ClassVar[int]
    key_id: str
    public_key_pem: str
    def __init__(self, key_id: _Optional[str] = ..., public_key_pem: _Optional[str] = ...) -> None: ...

class ListAuditPublicKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[AuditPublicKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[AuditPublicKey, _Mapping]]] = ...) -> None: ...
