"""A single-node training pod's identity: its per-attempt client certificate, the Secret that carries
it, and how the pod mounts it (never as env values or arguments)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from services.common.auth.pki import LocalPki, ensure_local_pki, spiffe_identity
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.training_spec import TrainingSpec
from services.orchestrator.executors.kubernetes import KubernetesExecutor, render_job, validate_manifests
from services.orchestrator.executors.kubernetes_credentials import (TLS_DIR, PodCredentials, certificate_lifetime,
                                                                    issue_pod_credentials, pod_identity_name)
from services.orchestrator.executors.kubernetes_names import workload_name
from services.orchestrator.executors.launchers import configured_launchers
from services.common.config import PlatformConfig
from tests.unit.orchestrator.test_kubernetes_manifests import CPU_POOL, DATASET, GPU_POOL, SETTINGS, TENANT, spec

pytestmark = pytest.mark.unit
NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LocalPki:
    return ensure_local_pki(tmp_path_factory.mktemp("pki"))


def credentials_for(pki: LocalPki, attempt: int = 1, job_id: str = "job-1",
                    valid_for: dt.timedelta = dt.timedelta(hours=1)) -> PodCredentials:
    return issue_pod_credentials(pki, pod_identity_name(workload_name(job_id, TENANT, attempt)), valid_for, now=NOW)


def no_cluster() -> Any:
    pytest.fail("rendering and issuing contact no cluster")


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (obj,) = [m for m in manifests if m["kind"] == kind]
    return obj


def test_the_certificate_names_the_attempts_pod_and_only_authenticates_a_client(pki: LocalPki) -> None:
    creds = credentials_for(pki, attempt=3)
    cert = x509.load_pem_x509_certificate(creds.cert_pem)
    ca = x509.load_pem_x509_certificate(pki.ca_bytes())
    cert.verify_directly_issued_by(ca)
    (uri,) = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    assert uri == creds.identity == f"spiffe://privtune/worker/k8s-{workload_name('job-1', TENANT, 3)}"
    assert spiffe_identity(uri) == ("worker", f"k8s-{workload_name('job-1', TENANT, 3)}")
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc == NOW + dt.timedelta(hours=1) == creds.not_after
    assert cert.not_valid_before_utc < NOW  # a node whose clock is a little behind still accepts it
    assert creds.ca_pem == pki.ca_bytes()
    assert "PRIVATE" not in repr(creds)  # the key never lands in a log line or an assertion message


def test_each_attempt_gets_its_own_key_and_nothing_is_written_to_the_pki_folder(pki: LocalPki) -> None:
    before = sorted(p.name for p in pki.root.iterdir())
    first, again = credentials_for(pki), credentials_for(pki)
    assert first.key_pem != again.key_pem and first.cert_pem != again.cert_pem
    assert sorted(p.name for p in pki.root.iterdir()) == before


def test_the_certificate_lasts_the_attempts_deadline_or_the_configured_lifetime() -> None:
    assert certificate_lifetime(SETTINGS) == dt.timedelta(seconds=86400 + 600)
    capped = SETTINGS.model_copy(update={"active_deadline_seconds": 7200})
    assert certificate_lifetime(capped) == dt.timedelta(seconds=7200 + 600)
    short = SETTINGS.model_copy(update={"pod_certificate_seconds": 3600})
    assert certificate_lifetime(short) == dt.timedelta(seconds=3600 + 600)


def test_a_name_that_is_not_a_component_name_is_refused(pki: LocalPki) -> None:
    with pytest.raises(ValueError, match="component name"):
        issue_pod_credentials(pki, "k8s/../service", dt.timedelta(hours=1))


def test_the_single_node_pod_mounts_its_certificate_secret_read_only(pki: LocalPki) -> None:
    creds = credentials_for(pki)
    manifests = render_job("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", SETTINGS, DATASET, 1, credentials=creds)
    validate_manifests(manifests)
    assert [m["kind"] for m in manifests] == ["NetworkPolicy", "ConfigMap", "Secret", "Job"]  # secret before pod
    secret = by_kind(manifests, "Secret")
    assert secret["type"] == "kubernetes.io/tls" and secret["immutable"] is True
    assert secret["metadata"]["name"] == f"{workload_name('job-1', TENANT, 1)}-tls"
    assert secret["metadata"]["labels"]["privtune.io/attempt"] == "1"  # stop() finds it by the job's labels
    assert secret["metadata"]["annotations"]["privtune.io/identity"] == creds.identity
    data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    assert data == {"tls.crt": creds.cert_pem, "tls.key": creds.key_pem, "ca.crt": creds.ca_pem}

    pod = manifests[-1]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["client-tls"]["secret"] == {"secretName": secret["metadata"]["name"], "defaultMode": 0o444}
    container = pod["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["client-tls"] == {"name": "client-tls", "mountPath": TLS_DIR, "readOnly": True}
    env = {e["name"]: e for e in container["env"]}
    assert env["PRIVTUNE_CLIENT_CERT"] == {"name": "PRIVTUNE_CLIENT_CERT", "value": f"{TLS_DIR}/tls.crt"}
    assert env["PRIVTUNE_CLIENT_KEY"]["value"] == f"{TLS_DIR}/tls.key"
    assert env["PRIVTUNE_CA"]["value"] == f"{TLS_DIR}/ca.crt"
    # the key and certificate are in the Secret only: not in the env, the command or any other object
    pod_text = json.dumps([m for m in manifests if m["kind"] != "Secret"])
    for pem in (creds.cert_pem, creds.key_pem):
        assert pem.decode() not in pod_text and base64.b64encode(pem).decode() not in pod_text
    assert "secretKeyRef" not in pod_text and "PRIVATE KEY" not in pod_text
    command = container["command"]
    assert command[command.index("--worker-id") + 1] == creds.identity.rsplit("/", 1)[1]


def test_an_offline_preview_mounts_the_secret_by_name_without_a_key(pki: LocalPki) -> None:
    manifests = render_job("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", SETTINGS, DATASET, 2)
    validate_manifests(manifests)
    assert [m["kind"] for m in manifests] == ["NetworkPolicy", "ConfigMap", "Job"]
    volumes = {v["name"]: v for v in manifests[-1]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["client-tls"]["secret"]["secretName"] == f"{workload_name('job-1', TENANT, 2)}-tls"


def test_gang_pods_make_no_grpc_call_and_get_no_certificate(pki: LocalPki) -> None:
    manifests = render_job("job-1", TENANT, spec(16), GPU_POOL, "a100-80gb", SETTINGS, DATASET, 1,
                           credentials=credentials_for(pki))
    assert [m["kind"] for m in manifests] == ["NetworkPolicy", "ConfigMap", "PyTorchJob"]
    for replica in manifests[-1]["spec"]["pytorchReplicaSpecs"].values():
        pod = replica["template"]["spec"]
        assert "client-tls" not in {v["name"] for v in pod["volumes"]}
        assert not {"PRIVTUNE_CLIENT_CERT", "PRIVTUNE_CLIENT_KEY"} & {e["name"] for e in pod["containers"][0]["env"]}


def test_a_certificate_of_another_attempt_is_refused(pki: LocalPki) -> None:
    with pytest.raises(InvalidArgument, match="not the pod of attempt 2"):
        render_job("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", SETTINGS, DATASET, 2,
                   credentials=credentials_for(pki, attempt=1))


def test_extra_env_cannot_point_the_pod_at_other_certificate_files(pki: LocalPki) -> None:
    settings = SETTINGS.model_copy(update={"extra_env": {"PRIVTUNE_CLIENT_KEY": "/tmp/mine.key", "X": "1"}})
    manifests = render_job("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", settings, DATASET, 1,
                           credentials=credentials_for(pki))
    env = {e["name"]: e["value"] for e in manifests[-1]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PRIVTUNE_CLIENT_KEY"] == f"{TLS_DIR}/tls.key" and env["X"] == "1"


def test_with_an_fs_group_the_key_is_readable_by_the_group_only(pki: LocalPki) -> None:
    settings = SETTINGS.model_copy(update={"fs_group": 2000})
    manifests = render_job("job-1", TENANT, spec(2), CPU_POOL, "cpu", settings, DATASET, 1,
                           credentials=credentials_for(pki))
    validate_manifests(manifests)
    volumes = {v["name"]: v for v in manifests[-1]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["client-tls"]["secret"]["defaultMode"] == 0o440


def test_the_executor_issues_per_attempt_certificates_from_its_ca(pki: LocalPki) -> None:
    executor = KubernetesExecutor(SETTINGS, no_cluster, pki)
    manifests = executor.prepare("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", DATASET, 4)
    secret = by_kind(manifests, "Secret")
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_bytes()))
    assert secret["metadata"]["annotations"]["privtune.io/identity"].endswith(workload_name("job-1", TENANT, 4))
    lifetime = cert.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=24) < lifetime <= certificate_lifetime(SETTINGS)
    key = base64.b64decode(secret["data"]["tls.key"])
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and b"PRIVATE KEY" in key


def test_an_executor_without_the_platform_ca_launches_nothing_that_needs_one(tmp_path: Path) -> None:
    executor = KubernetesExecutor(SETTINGS, no_cluster)
    with pytest.raises(FailedPrecondition, match="PKI folder") as info:
        executor.prepare("job-1", TENANT, spec(1), GPU_POOL, "a100-80gb", DATASET, 1)
    assert info.value.details.reason == "NO_PLATFORM_CA"
    assert executor.prepare("job-1", TENANT, spec(16), GPU_POOL, "a100-80gb", DATASET, 1)[-1]["kind"] == "PyTorchJob"
    empty = KubernetesExecutor(SETTINGS, no_cluster, LocalPki(tmp_path))
    with pytest.raises(FailedPrecondition):
        empty.issue_credentials("job-1", TENANT, 1)


def _settings_file(tmp_path: Path) -> Path:
    path = tmp_path / "k8s.yaml"
    path.write_text(json.dumps(SETTINGS.model_dump(mode="json")))
    return path


def test_configured_launchers_give_the_executor_the_platform_ca(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVTUNE_K8S_SETTINGS", str(_settings_file(tmp_path)))
    config = PlatformConfig.from_env(tmp_path / "data", pki_root=tmp_path / "pki")
    launcher = configured_launchers({}, config)["kubernetes"]
    assert launcher.executor.pki.root == tmp_path / "pki"  # type: ignore[attr-defined]
    monkeypatch.setenv("PRIVTUNE_PKI_DIR", str(tmp_path / "env-pki"))
    launcher = configured_launchers({})["kubernetes"]
    assert launcher.executor.pki.root == tmp_path / "env-pki"  # type: ignore[attr-defined]


def test_configured_launchers_refuse_kubernetes_without_a_platform_ca(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVTUNE_K8S_SETTINGS", str(_settings_file(tmp_path)))
    monkeypatch.delenv("PRIVTUNE_PKI_DIR", raising=False)
    with pytest.raises(ValueError, match="PRIVTUNE_PKI_DIR"):
        configured_launchers({})
