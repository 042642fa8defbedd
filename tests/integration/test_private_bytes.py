"""Invariant 1: a canary planted in a tenant's files never reaches the bus, the store or the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from privtune.v1 import dataset_service_pb2 as pb
from tests.platform_fixtures import dataset_stub, metadata, register, start_platform, wait_until

pytestmark = pytest.mark.integration
CANARY = "CANARY-7f3a9c-SSN-078-05-1120"


def test_canary_in_tenant_files_never_leaves_tenant_storage(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    platform = start_platform(tmp_path)
    try:
        stub = dataset_stub(platform)
        files = {"tickets.jsonl": f'{{"q": "my ssn is {CANARY}", "a": "noted"}}\n'.encode() * 50,
                 "notes.md": f"# {CANARY}\n".encode()}
        created = register(stub, platform, "acme", "tickets", files)
        wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets) == 1,
                   what="read model")
        stream = stub.WatchDataset(pb.WatchDatasetRequest(dataset_id=created.dataset_id), metadata=metadata(),
                                   timeout=10)
        events = [next(stream)]
        stream.cancel()
    finally:
        platform.stop()
    canary = CANARY.encode()
    assert canary not in b"".join(e.SerializeToString() for e in events)
    assert canary not in created.SerializeToString()
    for db in ("events.db", "privtune.db"):
        for path in tmp_path.glob(db + "*"):  # the database and its WAL
            assert canary not in path.read_bytes(), f"canary found in {path.name}"
    assert CANARY not in caplog.text
