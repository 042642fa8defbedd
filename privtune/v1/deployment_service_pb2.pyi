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
    DEPLOYMENT_STATE_POOL_DEPLOYED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_HEALTHY: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_SHADOWING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_TRAFFIC_FLIPPED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_VERIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ROLLED_BACK: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_FAILED: _ClassVar[DeploymentState]
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_REQUESTED: DeploymentState
DEPLOYMENT_STATE_APPROVED: DeploymentState
DEPLOYMENT_STATE_POOL_DEPLOYED: DeploymentState
DEPLOYMENT_STATE_HEALTHY: DeploymentState
DEPLOYMENT_STATE_SHADOWING: DeploymentState
DEPLOYMENT_STATE_TRAFFIC_FLIPPED: DeploymentState
DEPLOYMENT_STATE_VERIFIED: DeploymentState
DEPLOYMENT_STATE_ROLLED_BACK: DeploymentState
DEPLOYMENT_STATE_FAILED: DeploymentState

class TrafficSwitch(_message.Message):
    __slots__ = ("drain_seconds",)
    DRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    drain_seconds: int
    def __init__(self, drain_seconds: _Optional[int] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("deployment_id", "model_version_id", "environment", "strategy", "state", "endpoint_name", "requested_by", "approver", "pool", "previous_model_version_id", "rollback_trigger", "reason", "error_code", "gates_passed", "weight_percent", "created_at", "updated_at", "metric_gates", "drain_seconds", "verify_seconds", "rollback_on_regression", "canary_steps_percent", "gateway_url", "eval_id")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_TRIGGER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    GATES_PASSED_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    METRIC_GATES_FIELD_NUMBER: _ClassVar[int]
    DRAIN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    VERIFY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ON_REGRESSION_FIELD_NUMBER: _ClassVar[int]
    CANARY_STEPS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_URL_FIELD_NUMBER: _ClassVar[int]
    EVAL_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    model_version_id: str
    environment: str
    strategy: _events_pb2.RolloutStrategy
    state: DeploymentState
    endpoint_name: str
    requested_by: str
    approver: str
    pool: str
    previous_model_version_id: str
    rollback_trigger: str
    reason: str
    error_code: str
    gates_passed: _containers.RepeatedScalarFieldContainer[str]
    weight_percent: int
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    metric_gates: _events_pb2.TrafficGateLimits
    drain_seconds: int
    verify_seconds: int
    rollback_on_regression: bool
    canary_steps_percent: _containers.RepeatedScalarFieldContainer[int]
    gateway_url: str
    eval_id: str
    def __init__(self, deployment_id: _Optional[str] = ..., model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., strategy: _Optional[_Union[_events_pb2.RolloutStrategy, str]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., endpoint_name: _Optional[str] = ..., requested_by: _Optional[str] = ..., approver: _Optional[str] = ..., pool: _Optional[str] = ..., previous_model_version_id: _Optional[str] = ..., rollback_trigger: _Optional[str] = ..., reason: _Optional[str] = ..., error_code: _Optional[str] = ..., gates_passed: _Optional[_Iterable[str]] = ..., weight_percent: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metric_gates: _Optional[_Union[_events_pb2.TrafficGateLimits, _Mapping]] = ..., drain_seconds: _Optional[int] = ..., verify_seconds: _Optional[int] = ..., rollback_on_regression: _Optional[bool] = ..., canary_steps_percent: _Optional[_Iterable[int]] = ..., gateway_url: _Optional[str] = ..., eval_id: _Optional[str] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("model_version_id", "environment", "strategy", "canary_steps_percent", "traffic_switch", "rollback_on_regression", "metric_gates", "endpoint_name", "verify_seconds", "request_id")
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    CANARY_STEPS_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TRAFFIC_SWITCH_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_ON_REGRESSION_FIELD_NUMBER: _ClassVar[int]
    METRIC_GATES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    VERIFY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    model_version_id: str
    environment: str
    strategy: _events_pb2.RolloutStrategy
    canary_steps_percent: _containers.RepeatedScalarFieldContainer[int]
    traffic_switch: TrafficSwitch
    rollback_on_regression: bool
    metric_gates: _events_pb2.TrafficGateLimits
    endpoint_name: str
    verify_seconds: int
    request_id: str
    def __init__(self, model_version_id: _Optional[str] = ..., environment: _Optional[str] = ..., strategy: _Optional[_Union[_events_pb2.RolloutStrategy, str]] = ..., canary_steps_percent: _Optional[_Iterable[int]] = ..., traffic_switch: _Optional[_Union[TrafficSwitch, _Mapping]] = ..., rollback_on_regression: _Optional[bool] = ..., metric_gates: _Optional[_Union[_events_pb2.TrafficGateLimits, _Mapping]] = ..., endpoint_name: _Optional[str] = ..., verify_seconds: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ApproveDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class ApproveDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class RollbackDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id", "reason")
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    reason: str
    def __init__(self, deployment_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class RollbackDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("deployment_id",)
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    deployment_id: str
    def __init__(self, deployment_id: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "endpoint_name")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    endpoint_name: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., endpoint_name: _Optional[str] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments", "next_page_token")
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    next_page_token: str
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetServedRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ServedRequest(_message.Message):
    __slots__ = ("request_id", "endpoint_name", "model_version_id", "deployment_id", "pool", "routing_version", "status", "seconds", "stream", "principal", "at")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    endpoint_name: str
    model_version_id: str
    deployment_id: str
    pool: str
    routing_version: int
    status: int
    seconds: float
    stream: bool
    principal: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, request_id: _Optional[str] = ..., endpoint_name: _Optional[str] = ..., model_version_id: _Optional[str] = ..., deployment_id: _Optional[str] = ..., pool: _Optional[str] = ..., routing_version: _Optional[int] = ..., status: _Optional[int] = ..., seconds: _Optional[float] = ..., stream: _Optional[bool] = ..., principal: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetServedRequestResponse(_message.Message):
    __slots__ = ("request",)
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    request: ServedRequest
    def __init__(self, request: _Optional[_Union[ServedRequest, _Mapping]] = ...) -> None: ...
