"""The worker pool on the bus, behind the orchestrator: events of a real job, heartbeats, a killed
worker's job requeued and resumed from its checkpoint without anyone acting, data parallel."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import pytest

from gpu_worker.claims import GrpcAttemptClaims
from services.common.hashing import folder_files, manifest_sha256
from gpu_worker.worker import TrainingWorker, WorkerSettings
from privtune.platform import Platform
from services.common import eventstore
from services.common.config import PlatformConfig
from services.common.topics import TRAINING_EVENTS
from services.orchestrator.catalog import dataset_info
from tests.orchestrator_fixtures import create_job, job_request, register_version
from tests.platform_fixtures import component_credentials, component_target, wait_until
from tests.training_fixtures import REPO, TENANT, make_models, tiny_spec

pytestmark = pytest.mark.integration


def _config(tmp_path: Path) -> PlatformConfig:
    return PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0",
                                   bus_uri=f"sqlite:///{tmp_path}/events.db?session_timeout_ms=3000")


@pytest.fixture
def relay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platform]:
    """The orchestrator (API, controller, read models) and the outbox relay; workers under test run separately.

    Two local device slots; a running job without a sign of life for 4 s has lost its worker.
    """
    monkeypatch.setenv("PRIVTUNE_WORKER_LOST_AFTER_S", "4")
    monkeypatch.setenv("PRIVTUNE_START_TIMEOUT_S", "120")
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 2, shared: false}\n")
    platform = Platform(_config(tmp_path), services=("orchestrator",)).start()
    make_models(platform.config.models_dir)
    yield platform
    platform.stop()


def _worker(platform: Platform, settings: WorkerSettings) -> TrainingWorker:
    """A pool member of the platform's bus that claims attempts from its orchestrator (no store), on its
    component port with a worker certificate."""
    claims = GrpcAttemptClaims(component_target(platform), credentials=component_credentials(platform))
    return TrainingWorker(platform.bus, claims, settings)  # type: ignore[arg-type]


def _kinds(platform: Platform, job_id: str) -> list[str]:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return [e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT, job_id)]


def _stream(platform: Platform, job_id: str):  # type: ignore[no-untyped-def]
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return eventstore.load_stream(conn, TENANT, job_id)


def test_a_requested_job_runs_and_reports_every_stage(relay: Platform, tmp_path: Path) -> None:
    config = relay.config
    settings = WorkerSettings(models_dir=config.models_dir, storage_uri=config.storage_uri, work_dir=config.work_dir,
                              worker_id="worker-a", heartbeat_seconds=0.5, progress_seconds=0.0)
    worker = _worker(relay, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        version = register_version(relay.engine, config.storage_uri)  # type: ignore[arg-type]
        job = create_job(relay, job_request(version, max_steps=12, checkpoint_every=6))
        wait_until(lambda: "training_completed" in _kinds(relay, job.job_id), 180, "the job to complete")
    finally:
        stop.set()
        thread.join(timeout=30)
        worker.close()
    events = _stream(relay, job.job_id)
    kinds = [e.WhichOneof("payload") for e in events]
    assert "training_heartbeat" in kinds
    facts = [e for e in events if e.WhichOneof("payload") != "training_heartbeat"]
    kinds = [e.WhichOneof("payload") for e in facts]
    assert kinds[:5] == ["training_requested", "training_queued", "training_scheduled", "training_attempt_claimed",
                         "training_started"]
    assert kinds[-1] == "training_completed" and kinds.count("training_progress") == 12
    assert facts[3].training_attempt_claimed.worker_id == "worker-a" and facts[3].actor == "worker-a"
    started = facts[4].training_started
    assert started.worker_id == "worker-a" and started.attempt == 1 and started.total_steps == 12
    assert started.bitwise_reproducible.startswith("yes") and started.library_versions["torch"]
    saved = [e.checkpoint_saved for e in events if e.WhichOneof("payload") == "checkpoint_saved"]
    assert [c.step for c in saved] == [6, 12] and all(c.uri.startswith("file://") and c.sha256 for c in saved)
    done = facts[-1].training_completed
    artifact = config.work_dir / TENANT / job.job_id / "artifact"
    assert done.artifact_sha256 == manifest_sha256(folder_files(artifact)) and done.steps == 12
    assert done.eval_loss < done.initial_eval_loss
    assert all(e.causation_id for e in events[2:])
    assert len({e.correlation_id for e in events}) == 1  # the create call's correlation id, carried throughout
    sub = relay.bus.subscribe("test-reader", [TRAINING_EVENTS])  # type: ignore[union-attr]
    seen: set[str] = set()
    wait_until(lambda: seen.update(r.key.decode() for r in sub.poll(timeout=0.5)) or job.job_id in seen, 30,
               "the job's events on the bus")
    sub.close()


def _serve_training(config: PlatformConfig, log: Path, orchestrator: str) -> subprocess.Popen[bytes]:
    # a worker process gets the bus and the orchestrator's component address; never the store
    env = {**{k: v for k, v in os.environ.items() if k != "PRIVTUNE_STORE"}, "PYTHONPATH": str(REPO),
           "PRIVTUNE_DATA_DIR": str(config.data_dir), "PRIVTUNE_BUS": config.bus_uri,
           "PRIVTUNE_ORCHESTRATOR": orchestrator, "PRIVTUNE_HEARTBEAT_S": "0.5"}
    return subprocess.Popen([sys.executable, "-m", "privtune", "serve", "training"], cwd=REPO, env=env,
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT)


def test_a_killed_workers_job_is_requeued_and_resumed_from_its_checkpoint(relay: Platform,
                                                                          tmp_path: Path) -> None:
    config = relay.config
    version = register_version(relay.engine, config.storage_uri)  # type: ignore[arg-type]
    job_id = create_job(relay, job_request(version, max_steps=40, checkpoint_every=5)).job_id
    first = _serve_training(config, tmp_path / "worker-1.log", component_target(relay))
    try:
        wait_until(lambda: "checkpoint_saved" in _kinds(relay, job_id), 180, "a first checkpoint")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        first.kill()
    second = _serve_training(config, tmp_path / "worker-2.log", component_target(relay))
    try:
        wait_until(lambda: "training_completed" in _kinds(relay, job_id), 240, "the resumed job to complete")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)
    events = _stream(relay, job_id)
    kinds = [e.WhichOneof("payload") for e in events]
    requeued = [e.training_queued for e in events if e.WhichOneof("payload") == "training_queued"]
    assert [q.reason for q in requeued] == ["admitted", "worker_lost"] and requeued[1].attempt == 2
    assert events[kinds.index("training_queued", 2)].actor == "privtune/orchestrator-controller"
    starts = [e.training_started for e in events if e.WhichOneof("payload") == "training_started"]
    assert len(starts) == 2 and starts[0].resumed_from_checkpoint_id == ""
    assert starts[1].resumed_from_checkpoint_id.startswith("step-") and starts[1].attempt == 2
    assert starts[0].worker_id != starts[1].worker_id
    assert kinds.count("training_completed") == 1 and kinds.count("training_scheduled") == 2


def test_data_parallel_job_matches_single_process_loss_curve(relay: Platform, tmp_path: Path) -> None:
    """torchrun with 2 processes (DDP over gloo) at the same effective batch as 1 process x 2 accumulations."""
    from tests.training_fixtures import run_to_end

    config = relay.config
    version = register_version(relay.engine, config.storage_uri)  # type: ignore[arg-type]
    uri = dataset_info(relay.engine, TENANT, version).uri  # type: ignore[arg-type]
    single = tiny_spec(uri, job_id="single", max_steps=6, micro_batch_size=8, gradient_accumulation_steps=2)
    rc, events = run_to_end(single, config.models_dir, config.storage_uri, tmp_path / "single")
    assert rc == 0
    reference = [e["loss"] for e in events if e["kind"] == "progress"]
    settings = WorkerSettings(models_dir=config.models_dir, storage_uri=config.storage_uri, work_dir=config.work_dir,
                              worker_id="worker-ddp", progress_seconds=0.0, heartbeat_seconds=0.5)
    worker = _worker(relay, settings)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    try:
        ddp = create_job(relay, job_request(version, name="ddp", max_steps=6, micro_batch_size=8, gpus=2)).job_id
        wait_until(lambda: {"training_completed", "training_failed"} & set(_kinds(relay, ddp)), 240,
                   "the data-parallel job to finish")
    finally:
        stop.set()
        thread.join(timeout=30)
        worker.close()
    events_ddp = _stream(relay, ddp)
    assert events_ddp[-1].WhichOneof("payload") == "training_completed", events_ddp[-1]
    losses = [e.training_progress.loss for e in events_ddp if e.WhichOneof("payload") == "training_progress"]
    assert losses == pytest.approx(reference, rel=1e-4)
    started = next(e.training_started for e in events_ddp if e.WhichOneof("payload") == "training_started")
    assert started.effective_batch_size == 16
