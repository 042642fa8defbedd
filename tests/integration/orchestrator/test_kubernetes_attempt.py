"""A Kubernetes pool's attempt, run from the rendered pod's own command line.

No cluster is reachable here, so the test plays the kubelet: it has the executor prepare (render,
validate and issue the pod certificate for) the Job of an attempt the controller scheduled on a
``kubernetes`` pool, writes the pod's certificate Secret where its volume mounts it, and runs the
container's command as a local process with the container's environment, the pod's paths mapped
to this machine. The attempt claims itself from the orchestrator over mutual TLS on the component
port, with that certificate only, and reports on the bus like any worker; the pod has no store
credentials and no access to the platform's PKI folder.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import grpc
import pytest

from gpu_worker.claims import ClaimUnavailable, GrpcAttemptClaims
from privtune.platform import Platform
from privtune.v1 import training_service_pb2 as pb
from privtune.v1 import training_service_pb2_grpc as pb_grpc
from privtune.v1.training_attempt_service_pb2 import ClaimAttemptRequest
from privtune.v1.training_attempt_service_pb2_grpc import TrainingAttemptServiceStub
from services.common import eventstore
from services.common.auth.pki import ensure_local_pki
from services.common.config import PlatformConfig
from services.common.training_spec import TrainingSpec
from services.orchestrator.executors.kubernetes import KubernetesExecutor, KubernetesSettings, validate_manifests
from services.orchestrator.executors.kubernetes_credentials import (PodCredentials, issue_pod_credentials,
                                                                    pod_identity_name)
from services.orchestrator.executors.kubernetes_names import workload_name
from services.orchestrator.executors.kubernetes_pod import SCRATCH_DIR
from services.orchestrator.settings import load_pools
from tests.orchestrator_fixtures import job_request, register_version
from tests.platform_fixtures import channel, component_target, metadata, shared_auth_overrides, wait_until
from tests.training_fixtures import REPO, TENANT, make_models

pytestmark = pytest.mark.integration
# the platform's own credentials, which a pod never has
PLATFORM_ONLY_ENV = ("PRIVTUNE_STORE", "PRIVTUNE_PKI_DIR", "PRIVTUNE_AUTH_DIR")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    (tmp_path / "pools.yaml").write_text(
        "pools:\n  - {name: k8s-cpu, gpu_type: cpu, gpus: 1, shared: false, executor: kubernetes}\n")
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0", **shared_auth_overrides())
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator",)).start()  # no local worker: only the "pod" trains
    yield running
    running.stop()


def _training(platform: Platform) -> pb_grpc.TrainingServiceStub:
    return pb_grpc.TrainingServiceStub(channel(platform))


def _stream(platform: Platform, job_id: str) -> list:  # type: ignore[type-arg]
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return eventstore.load_stream(conn, TENANT, job_id)


def _kinds(platform: Platform, job_id: str) -> list[str]:
    return [e.WhichOneof("payload") for e in _stream(platform, job_id)]


@dataclass
class ScheduledPod:
    """An attempt the controller scheduled on the Kubernetes pool, and what the executor would create for it."""

    job_id: str
    attempt: int
    executor: KubernetesExecutor
    manifests: list[dict[str, Any]]

    @property
    def pod(self) -> dict[str, Any]:
        return self.manifests[-1]["spec"]["template"]["spec"]  # type: ignore[no-any-return]

    @property
    def container(self) -> dict[str, Any]:
        return self.pod["containers"][0]  # type: ignore[no-any-return]

    @property
    def identity_name(self) -> str:
        return pod_identity_name(workload_name(self.job_id, TENANT, self.attempt))


def _no_cluster() -> Any:
    pytest.fail("preparing an attempt contacts no cluster")


def schedule_pod(platform: Platform, tmp_path: Path, **job: Any) -> ScheduledPod:
    config = platform.config
    version = register_version(platform.engine, config.storage_uri)  # type: ignore[arg-type]
    created = _training(platform).CreateTrainingJob(job_request(version, gpu_pool="k8s-cpu", **job),
                                                    metadata=metadata(TENANT), timeout=60).job
    wait_until(lambda: _kinds(platform, created.job_id)[-1] == "training_scheduled", 60,
               "the controller to schedule the job on the Kubernetes pool")
    scheduled = _stream(platform, created.job_id)[-1].training_scheduled
    assert (scheduled.executor, scheduled.gpu_pool, scheduled.attempt) == ("kubernetes", "k8s-cpu", 1)
    request = _stream(platform, created.job_id)[0].training_requested
    spec = TrainingSpec.model_validate_json(request.config_json)
    settings = KubernetesSettings(image="registry.local/privtune:test", models_pvc="models", storage_pvc="tenants",
                                  storage_root_uri=config.storage_uri, models_mount_path=str(config.models_dir),
                                  bus_uri=config.bus_uri, orchestrator_address=component_target(platform))
    executor = KubernetesExecutor(settings, _no_cluster, ensure_local_pki(config.pki_dir))
    pool = load_pools(tmp_path / "pools.yaml")["k8s-cpu"]
    manifests = executor.prepare(created.job_id, TENANT, spec, pool, "cpu", request.dataset_uri, scheduled.attempt)
    validate_manifests(manifests)
    return ScheduledPod(created.job_id, scheduled.attempt, executor, manifests)


def mount_secrets(scheduled: ScheduledPod, root: Path, replace: dict[str, bytes] | None = None) -> dict[str, str]:
    """Write every Secret volume of the pod under ``root`` as the kubelet would (``replace``: other bytes for
    some keys); returns {mount path in the pod: folder here}."""
    secrets = {m["metadata"]["name"]: m for m in scheduled.manifests if m["kind"] == "Secret"}
    mounted: dict[str, str] = {}
    for volume in scheduled.pod["volumes"]:
        if "secret" not in volume:
            continue
        (mount,) = [m for m in scheduled.container["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["readOnly"] is True
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        for key, value in secrets[volume["secret"]["secretName"]]["data"].items():
            (folder / key).write_bytes((replace or {}).get(key, base64.b64decode(value)))
            (folder / key).chmod(volume["secret"]["defaultMode"])
        mounted[mount["mountPath"]] = str(folder)
    return mounted


def pod_process(scheduled: ScheduledPod, tmp_path: Path, mounted: dict[str, str],
                **extra_env: str) -> tuple[list[str], dict[str, str]]:
    """The container's command line and environment, with the pod's paths mapped to this machine."""
    scratch = tmp_path / "scratch"
    argv = [sys.executable if part == "python" else part.replace(SCRATCH_DIR, str(scratch))
            for part in scheduled.container["command"]]
    env = {k: v for k, v in os.environ.items() if k not in PLATFORM_ONLY_ENV}
    for item in scheduled.container["env"]:
        value = item["value"]
        for inside, here in mounted.items():
            value = value.replace(inside, here)
        env[item["name"]] = value
    env.update({"PYTHONPATH": str(REPO), "PRIVTUNE_HEARTBEAT_S": "0.5", "OMP_NUM_THREADS": "2",
                "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **extra_env})
    return argv, env


def test_the_rendered_pod_command_runs_the_scheduled_attempt(platform: Platform, tmp_path: Path) -> None:
    config = platform.config
    scheduled = schedule_pod(platform, tmp_path, max_steps=6, checkpoint_every=3)
    job_id = scheduled.job_id
    assert [m["kind"] for m in scheduled.manifests] == ["NetworkPolicy", "ConfigMap", "Secret", "Job"]
    # the pod holds no credentials for the metadata store: it reports on the bus and claims over gRPC with
    # a certificate that reaches it only as a mounted file
    rendered = json.dumps(scheduled.manifests)
    assert "PRIVTUNE_STORE" not in rendered and config.store_uri not in rendered and "secretKeyRef" not in rendered
    assert "PRIVATE KEY" not in json.dumps(scheduled.container)
    command = scheduled.container["command"]
    assert command[command.index("--orchestrator") + 1] == component_target(platform) != platform.grpc_target
    mounted = mount_secrets(scheduled, tmp_path / "kubelet")
    argv, env = pod_process(scheduled, tmp_path, mounted)
    pod = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert pod.returncode == 0, pod.stderr[-3000:]
    wait_until(lambda: _kinds(platform, job_id)[-1] == "training_completed", 60,
               "the orchestrator to record the pod's reports")
    events = _stream(platform, job_id)
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[-1] == "training_completed" and "training_heartbeat" in kinds
    claimed = next(e for e in events if e.WhichOneof("payload") == "training_attempt_claimed")
    assert claimed.training_attempt_claimed.worker_id == scheduled.identity_name
    started = next(e.training_started for e in events if e.WhichOneof("payload") == "training_started")
    assert started.attempt == 1 and started.total_steps == 6
    wait_until(lambda: platform.engine is not None and _state(platform, job_id) == pb.TRAINING_JOB_STATE_SUCCEEDED,
               30, "the job to be listed as succeeded")
    again = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and kinds == _kinds(platform, job_id)


def _claim(platform: Platform, scheduled: ScheduledPod, credentials: grpc.ChannelCredentials | None) -> bool:
    """Claim the attempt as its pod would, giving up after a few seconds of no answer."""
    claims = GrpcAttemptClaims(component_target(platform), credentials=credentials, give_up_after=2.0)
    try:
        return claims.claim(TENANT, scheduled.job_id, scheduled.attempt, scheduled.identity_name,
                            "kubernetes").granted
    finally:
        claims.close()


def _mtls(creds: PodCredentials, ca: bytes | None = None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=ca or creds.ca_pem, private_key=creds.key_pem,
                                        certificate_chain=creds.cert_pem)


def test_a_pod_without_a_certificate_of_the_platform_ca_cannot_claim(platform: Platform, tmp_path: Path) -> None:
    scheduled = schedule_pod(platform, tmp_path)
    platform_ca = ensure_local_pki(platform.config.pki_dir).ca_bytes()

    # the Secret is not mounted: the pod says which file is missing and exits before any connection
    argv, env = pod_process(scheduled, tmp_path / "unmounted", {})
    unmounted = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert unmounted.returncode == 2, unmounted.stderr[-3000:]
    assert "$PRIVTUNE_CLIENT_CERT names /etc/privtune/tls/tls.crt, which cannot be read" in unmounted.stderr

    # a certificate of another CA, naming the same pod, mounted in its place (the CA file is the platform's,
    # so the pod trusts the orchestrator): the orchestrator refuses the handshake, the pod gives up (exit 4)
    rogue = issue_pod_credentials(ensure_local_pki(tmp_path / "rogue-pki"), scheduled.identity_name,
                                  dt.timedelta(hours=1))
    mounted = mount_secrets(scheduled, tmp_path / "rogue-kubelet",
                            replace={"tls.crt": rogue.cert_pem, "tls.key": rogue.key_pem})
    argv, env = pod_process(scheduled, tmp_path / "rogue", mounted, PRIVTUNE_CLAIM_GIVE_UP_S="2")
    forged = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert forged.returncode == 4, forged.stderr[-3000:]
    assert "pod's certificate comes from the platform CA" in forged.stderr

    # no TLS, TLS without a client certificate, an expired certificate of the platform CA: refused too
    pki = ensure_local_pki(platform.config.pki_dir)
    expired = issue_pod_credentials(pki, scheduled.identity_name, dt.timedelta(minutes=-1))
    with grpc.insecure_channel(component_target(platform)) as plain:  # plaintext: no claim client speaks it
        with pytest.raises(grpc.RpcError) as refused:
            TrainingAttemptServiceStub(plain).ClaimAttempt(ClaimAttemptRequest(
                job_id=scheduled.job_id, attempt=scheduled.attempt, worker_id=scheduled.identity_name,
                claim_id="plain"), metadata=[("x-privtune-tenant", TENANT)], timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    for name, credentials in (("no client certificate", grpc.ssl_channel_credentials(platform_ca)),
                              ("another CA", _mtls(rogue, platform_ca)),
                              ("expired", _mtls(expired))):
        with pytest.raises(ClaimUnavailable):
            _claim(platform, scheduled, credentials)
            pytest.fail(f"a claim with {name} was answered")
    assert "training_attempt_claimed" not in _kinds(platform, scheduled.job_id)

    # the certificate the executor issued for this attempt is the one that claims it
    issued = scheduled.executor.issue_credentials(scheduled.job_id, TENANT, scheduled.attempt)
    assert _claim(platform, scheduled, _mtls(issued))
    assert "training_attempt_claimed" in _kinds(platform, scheduled.job_id)


def _state(platform: Platform, job_id: str) -> int:
    return _training(platform).GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id), metadata=metadata(TENANT),
                                              timeout=10).job.state
