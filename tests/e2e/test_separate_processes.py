"""The same service as separate processes on Apache Kafka and PostgreSQL; one dies, the other carries on."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privtune.v1 import dataset_service_pb2 as pb
from privtune.v1 import dataset_service_pb2_grpc as pb_grpc
from tests.platform_fixtures import channel, metadata, wait_until
from tests.stores import fresh_postgres_database

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(bus: str, store: str, storage: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    # TLS on the session's PKI and token issuer (named in the environment); a component port of its own
    return subprocess.Popen(
        [sys.executable, "-m", "privtune", "serve", "ingest", "--bus", bus, "--store", store,
         "--storage", str(storage), "--grpc", f"127.0.0.1:{port}", "--data-dir", str(storage.parent)],
        cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PRIVTUNE_COMPONENT_GRPC": f"127.0.0.1:{_free_port()}"})


def _serving(port: int, proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"privtune serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
    try:
        stub = health_pb2_grpc.HealthStub(channel(f"127.0.0.1:{port}"))
        return stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def test_two_ingest_processes_share_kafka_and_postgres_and_survive_a_kill9(
        kafka_bootstrap: str, postgres_url: str, tmp_path: Path) -> None:
    bus = f"kafka://{kafka_bootstrap}?partitions=4&namespace=e2e-{uuid.uuid4().hex[:8]}"
    store = fresh_postgres_database(postgres_url)
    storage = tmp_path / "tenants"
    ports = [_free_port(), _free_port()]
    logs = [tmp_path / f"serve-{i}.log" for i in range(2)]
    procs = [_serve(bus, store, storage, port, log) for port, log in zip(ports, logs)]  # they migrate concurrently
    try:
        for port, proc, log in zip(ports, procs, logs):
            wait_until(lambda: _serving(port, proc, log), timeout=120, what=f"privtune serve on {port}")
        stubs = [pb_grpc.DatasetServiceStub(channel(f"127.0.0.1:{p}")) for p in ports]

        def register(stub: pb_grpc.DatasetServiceStub, name: str) -> None:
            folder = storage / "acme" / name
            folder.mkdir(parents=True)
            (folder / "a.txt").write_text(name)
            stub.CreateDataset(pb.CreateDatasetRequest(name=name, storage_uri=f"file://{folder}", classification=2),
                               metadata=metadata(), timeout=30)

        for i in range(10):
            register(stubs[i % 2], f"set-{i}")

        def listed(stub: pb_grpc.DatasetServiceStub) -> int:
            return len(stub.ListDatasets(pb.ListDatasetsRequest(page_size=500), metadata=metadata(),
                                         timeout=10).datasets)
        for stub in stubs:
            wait_until(lambda s=stub: listed(s) == 10, timeout=120, what="10 datasets via each process")

        procs[0].send_signal(signal.SIGKILL)  # relay lease and partitions must move to the survivor
        procs[0].wait()
        for i in range(10, 20):
            register(stubs[1], f"set-{i}")
        wait_until(lambda: listed(stubs[1]) == 20, timeout=180, what="20 datasets after the kill")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    assert procs[1].returncode == 0, logs[1].read_text()[-3000:]
