"""Helpers to run the platform in-process for tests and call its gRPC API."""

from __future__ import annotations

import time
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
                              metadata=metadata(tenant), timeout=30)


def wait_until(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
