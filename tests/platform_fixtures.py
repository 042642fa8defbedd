"""Helpers to run the platform in-process for tests and call its gRPC API."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as ds_pb
from privtune.v1 import dataset_service_pb2_grpc as ds_grpc
from services.common.config import PlatformConfig


def start_platform(data_dir: Path, **overrides: object) -> Platform:
    config = PlatformConfig.from_env(data_dir, grpc_address="127.0.0.1:0", **overrides)
    return Platform(config).start()


def metadata(tenant: str = "acme", actor: str = "alice") -> list[tuple[str, str]]:
    return [("x-privtune-tenant", tenant), ("x-privtune-actor", actor)]


def dataset_stub(platform: Platform) -> ds_grpc.DatasetServiceStub:
    return ds_grpc.DatasetServiceStub(grpc.insecure_channel(platform.grpc_target))


def put_files(platform: Platform, tenant: str, folder: str, files: dict[str, bytes]) -> str:
    """Write files into the tenant's storage and return the folder's file:// URI."""
    root = platform.config.storage_path / tenant / folder
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return f"file://{root}"


def register(stub: ds_grpc.DatasetServiceStub, platform: Platform, tenant: str, name: str,
             files: dict[str, bytes] | None = None) -> ds_pb.Dataset:
    uri = put_files(platform, tenant, name, files or {"data.jsonl": b'{"prompt": "p", "completion": "c"}\n'})
    return stub.CreateDataset(ds_pb.CreateDatasetRequest(name=name, storage_uri=uri, classification=2),
                              metadata=metadata(tenant), timeout=30).dataset


@dataclass(frozen=True)
class ErrorDetails:
    """What a client program reads from a failed call's google.rpc.Status details."""

    reason: str
    domain: str
    metadata: dict[str, str]
    fields: dict[str, str]                      # BadRequest: field path -> description
    resource: tuple[str, str] | None            # ResourceInfo: (type, name)
    preconditions: list[tuple[str, str, str]]   # PreconditionFailure: (type, subject, description)


def error_details(exc: grpc.RpcError) -> ErrorDetails:
    """Decode the status details of ``exc`` (fails the test when there are none, or no ErrorInfo)."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None, f"no status details on {exc.code()}: {exc.details()}"  # type: ignore[attr-defined]
    info, fields, resource, preconditions = None, {}, None, []
    for any_ in status.details:
        if any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            any_.Unpack(info)
        elif any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            any_.Unpack(bad)
            fields.update({v.field: v.description for v in bad.field_violations})
        elif any_.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            ri = error_details_pb2.ResourceInfo()
            any_.Unpack(ri)
            resource = (ri.resource_type, ri.resource_name)
        elif any_.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
            pf = error_details_pb2.PreconditionFailure()
            any_.Unpack(pf)
            preconditions += [(v.type, v.subject, v.description) for v in pf.violations]
    assert info is not None, f"no ErrorInfo in the details of {exc.details()}"  # type: ignore[attr-defined]
    return ErrorDetails(reason=info.reason, domain=info.domain, metadata=dict(info.metadata), fields=fields,
                        resource=resource, preconditions=preconditions)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
