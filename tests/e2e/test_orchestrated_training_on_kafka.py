"""The orchestrator and two training workers as separate processes on Apache Kafka and PostgreSQL.

The worker running a job is killed with SIGKILL; nobody acts: the controller notices the
missing heartbeats, requeues the job, and the other worker resumes it from its checkpoint.
Every process is on the session's PKI (named in its environment): the workers claim attempts on
the orchestrator's component port with their client certificates, the test calls its API over TLS.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from privtune.v1 import registry_service_pb2 as rpb
from privtune.v1 import registry_service_pb2_grpc as rpb_grpc
from privtune.v1 import training_service_pb2 as pb
from services.common import eventstore
from services.common.store import open_store
from tests.e2e.test_separate_processes import _free_port, _serving
from tests.orchestrator_fixtures import job_request, register_version, training_stub
from tests.platform_fixtures import channel, metadata, wait_until
from tests.stores import fresh_postgres_database
from tests.training_fixtures import TENANT, make_models

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _serve(service: str, bus: str, store: str, data: Path, log: Path, port: int = 0, component_port: int = 0,
           orchestrator: str = "") -> subprocess.Popen[bytes]:
    """``privtune serve``; a training worker gets the bus and the orchestrator's component address, never
    the store."""
    env = {**{k: v for k, v in os.environ.items() if k != "PRIVTUNE_STORE"}, "PYTHONPATH": str(ROOT),
           "PRIVTUNE_HEARTBEAT_S": "0.5", "PRIVTUNE_WORKER_LOST_AFTER_S": "6", "PRIVTUNE_MODELS": str(data / "models"),
           "PRIVTUNE_COMPONENT_GRPC": f"127.0.0.1:{component_port}"}
    backends = ["--orchestrator", orchestrator] if service == "training" else ["--store", store]
    return subprocess.Popen(
        [sys.executable, "-m", "privtune", "-v", "serve", service, "--bus", bus, *backends,
         "--storage", str(data / "tenants"), "--grpc", f"127.0.0.1:{port}", "--data-dir", str(data)],
        cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


def stop_processes(procs: list[subprocess.Popen[bytes]], timeout: float = 60) -> None:
    """SIGTERM every process that still runs, then wait (SIGKILL after ``timeout``)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_killed_worker_on_kafka_is_replaced_without_anyone_acting(kafka_bootstrap: str, postgres_url: str,
                                                                   tmp_path: Path) -> None:
    bus = f"kafka://{kafka_bootstrap}?partitions=3&namespace=orch-{uuid.uuid4().hex[:8]}"
    store = fresh_postgres_database(postgres_url)
    data = tmp_path / "data"
    (data / "tenants").mkdir(parents=True)
    (data / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 2, shared: false}\n")
    make_models(data / "models")
    engine = open_store(store)
    version = register_version(engine, f"file://{data / 'tenants'}")
    port, component_port = _free_port(), _free_port()
    orchestrator = _serve("orchestrator", bus, store, data, tmp_path / "orchestrator.log", port, component_port)
    workers = [_serve("training", bus, store, data, tmp_path / f"worker-{i}.log",
                      orchestrator=f"127.0.0.1:{component_port}") for i in range(2)]
    try:
        wait_until(lambda: _serving(port, orchestrator, tmp_path / "orchestrator.log"), 120, "the orchestrator")
        stub = training_stub(f"127.0.0.1:{port}")
        job = stub.CreateTrainingJob(job_request(version, max_steps=60, checkpoint_every=5), metadata=metadata(),
                                     timeout=60).job
        assert job.state == pb.TRAINING_JOB_STATE_QUEUED

        def stream() -> list:  # type: ignore[type-arg]
            with engine.connect() as conn:
                return eventstore.load_stream(conn, TENANT, job.job_id)

        wait_until(lambda: any(e.WhichOneof("payload") == "checkpoint_saved" for e in stream()), 240,
                   "a first checkpoint")
        running = next(e.training_started.worker_id for e in stream() if e.WhichOneof("payload") == "training_started")
        victim = next(w for w in workers if f"-{w.pid}-" in running)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        wait_until(lambda: stream()[-1].WhichOneof("payload") == "training_completed", 300,
                   "the job to be requeued, resumed and completed")
        events = stream()
        kinds = [e.WhichOneof("payload") for e in events]
        reasons = [e.training_queued.reason for e in events if e.WhichOneof("payload") == "training_queued"]
        starts = [e.training_started for e in events if e.WhichOneof("payload") == "training_started"]
        assert reasons == ["admitted", "worker_lost"] and kinds.count("training_completed") == 1
        assert [s.attempt for s in starts] == [1, 2] and starts[1].worker_id != running
        assert starts[1].resumed_from_checkpoint_id.startswith("step-")
        registry = rpb_grpc.ModelRegistryServiceStub(channel(f"127.0.0.1:{port}"))
        wait_until(lambda: bool(registry.ListModelVersions(rpb.ListModelVersionsRequest(), metadata=metadata(),
                                                           timeout=10).versions), 60, "the model version")
    finally:
        stop_processes([orchestrator, *workers])
        engine.dispose()
