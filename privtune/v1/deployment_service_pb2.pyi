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

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_REQUESTED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_APPROVED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DEPLOYED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_LIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLED_BACK: _ClassVar[DeploymentState]
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_REQUESTED: DeploymentState
DEPLOYMENT_STATE_APPROVED: DeploymentState
DEPLOYMENT_STATE_DEPLOYED: DeploymentState
DEPLOYMENT_STATE_LIVE: DeploymentState
DEPLOYMENT_STATE_ROLLED_BACK: DeploymentState

class Deployment(_message.Message):
    __slots__ = ("deployment_id", "model_version_id", "environment", "strategy", "state", "live_pool", "canary_weight_percent", "created_at", "updated_at")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIVE_POOL_FIELD_NUMBER: _ClassVar[int]
    CANARY_WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version_id: str
    environment: str
    strategy: _events_pb2.RolloutStrategy
    state: DeploymentState
    live_pool: str
    canary_weight_percent: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, deployment_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., strategy: _Optional[_Union[_events_pb2.RolloutStrategy, str]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., live_pool: _Optional[str] = ..., canary_weight_percent: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("model_version_id", "environment", "strategy", "canary_steps_percent", "request_id")
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANARY_STEPS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    environment: str
    strategy: _events_pb2.RolloutStrategy
    canary_steps_percent: _containers.RepeatedScalarFieldContainer[int]
    request_id: str
    def __init__(self, model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., strategy: _Optional[_Union[_events_pb2.RolloutStrategy, str]] = ..., canary_steps_percent: _Optional[_Iterable[int]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...
