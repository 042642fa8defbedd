"""A Kubernetes pool's attempt, run from the rendered pod's own command line.

No cluster is reachable here, so the test plays the kubelet: it renders (and validates)
the Job for a job the controller scheduled on a ``kubernetes`` pool, then runs the
container's command as a local process with the container's environment, the pod's
paths mapped to this machine. The attempt claims itself from the orchestrator over gRPC and
reports on the bus like any worker; the pod has no store credentials.

The platform runs in ``insecure-headers`` mode, explicitly: the pod's entry point
(``gpu_worker.run_attempt``) has no client certificate yet, so it cannot claim on the component
(mutual TLS) port of a platform in the default ``tls`` mode (docs/security.md, "Not yet").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from services.common.training_spec import TrainingSpec
from privtune.platform import Platform
from privtune.v1 import training_service_pb2 as pb
from privtune.v1 import training_service_pb2_grpc as pb_grpc
from services.common import eventstore
from services.common.config import PlatformConfig
from services.orchestrator.executors.kubernetes import KubernetesSettings, render_job, validate_manifests
from services.orchestrator.executors.kubernetes_pod import SCRATCH_DIR
from services.orchestrator.settings import load_pools
from tests.orchestrator_fixtures import job_request, register_version
from tests.platform_fixtures import wait_until
from tests.training_fixtures import REPO, TENANT, make_models

pytestmark = pytest.mark.integration
HEADERS = [("x-privtune-tenant", TENANT), ("x-privtune-actor", "alice")]  # the insecure mode's identity


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    (tmp_path / "pools.yaml").write_text(
        "pools:\n  - {name: k8s-cpu, gpu_type: cpu, gpus: 1, shared: false, executor: kubernetes}\n")
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0", auth_mode="insecure-headers")
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator",)).start()  # no local worker: only the "pod" trains
    yield running
    running.stop()


def _training(platform: Platform) -> pb_grpc.TrainingServiceStub:
    return pb_grpc.TrainingServiceStub(grpc.insecure_channel(platform.grpc_target))


def _stream(platform: Platform, job_id: str) -> list:  # type: ignore[type-arg]
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return eventstore.load_stream(conn, TENANT, job_id)


def test_the_rendered_pod_command_runs_the_scheduled_attempt(platform: Platform, tmp_path: Path) -> None:
    config = platform.config
    version = register_version(platform.engine, config.storage_uri)  # type: ignore[arg-type]
    job = _training(platform).CreateTrainingJob(job_request(version, gpu_pool="k8s-cpu", max_steps=6,
                                                             checkpoint_every=3), metadata=HEADERS, timeout=60).job
    wait_until(lambda: _stream(platform, job.job_id)[-1].WhichOneof("payload") == "training_scheduled", 60,
               "the controller to schedule the job on the Kubernetes pool")
    scheduled = _stream(platform, job.job_id)[-1].training_scheduled
    assert (scheduled.executor, scheduled.gpu_pool, scheduled.attempt) == ("kubernetes", "k8s-cpu", 1)
    request = _stream(platform, job.job_id)[0].training_requested
    spec = TrainingSpec.model_validate_json(request.config_json)
    settings = KubernetesSettings(image="registry.local/privtune:test", models_pvc="models", storage_pvc="tenants",
                                  storage_root_uri=config.storage_uri, models_mount_path=str(config.models_dir),
                                  bus_uri=config.bus_uri, orchestrator_address=platform.grpc_target)
    pool = load_pools(tmp_path / "pools.yaml")["k8s-cpu"]
    manifests = render_job(job.job_id, TENANT, spec, pool, "cpu", settings, request.dataset_uri, scheduled.attempt)
    validate_manifests(manifests)
    container = manifests[-1]["spec"]["template"]["spec"]["containers"][0]
    # the pod holds no credentials for the metadata store: it reports on the bus and claims over gRPC
    rendered = json.dumps(manifests)
    assert "PRIVTUNE_STORE" not in rendered and config.store_uri not in rendered and "secretKeyRef" not in rendered
    assert "--bus" in container["command"] and "--orchestrator" in container["command"]
    scratch = tmp_path / "scratch"
    argv = [sys.executable if part == "python" else part.replace(SCRATCH_DIR, str(scratch))
            for part in container["command"]]
    env = {k: v for k, v in os.environ.items() if k != "PRIVTUNE_STORE"}
    env.update({**{e["name"]: e["value"] for e in container["env"]}, "PYTHONPATH": str(REPO),
                "PRIVTUNE_HEARTBEAT_S": "0.5", "OMP_NUM_THREADS": "2", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)})
    pod = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert pod.returncode == 0, pod.stderr[-3000:]
    wait_until(lambda: _stream(platform, job.job_id)[-1].WhichOneof("payload") == "training_completed", 60,
               "the orchestrator to record the pod's reports")
    events = _stream(platform, job.job_id)
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[-1] == "training_completed" and "training_heartbeat" in kinds
    started = next(e.training_started for e in events if e.WhichOneof("payload") == "training_started")
    assert started.attempt == 1 and started.total_steps == 6
    wait_until(lambda: platform.engine is not None and _state(platform, job.job_id) == pb.TRAINING_JOB_STATE_SUCCEEDED,
               30, "the job to be listed as succeeded")
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and kinds == [e.WhichOneof("payload") for e in _stream(platform, job.job_id)]


def _state(platform: Platform, job_id: str) -> int:
    return _training(platform).GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id), metadata=HEADERS,
                                              timeout=10).job.state
