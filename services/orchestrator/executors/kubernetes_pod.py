"""The pod every training replica runs: one locked-down container running torchrun over ``gpu_worker.job``.

What a training pod can touch:

* its dataset version, read-only (a ``subPath`` of the tenant storage claim, nothing else of it);
* its base model, read-only (a ``subPath`` of the model store claim);
* its own output folder ``<tenant>/training/<job_id>/``, read-write: checkpoints, artifact
  and the events file the platform tails (the same paths ``gpu_worker.job`` uses locally);
* an emptyDir scratch for local checkpoints, ``/tmp`` and ``/dev/shm``;
* the spec JSON from its ConfigMap, read-only;
* a single-node pod: its client certificate, key and the platform CA from its attempt's Secret,
  read-only (``kubernetes_credentials``), named by ``PRIVTUNE_CLIENT_CERT``, ``PRIVTUNE_CLIENT_KEY``
  and ``PRIVTUNE_CA``.

Tenant storage appears at the same path as on the platform, so the spec's ``dataset_uri``
and the URIs in the job's events need no translation (and the spec's sha256 is unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from services.common.errors import InvalidArgument
from services.orchestrator.executors.kubernetes_credentials import (CA_ENV, CA_KEY, CERT_KEY, CLIENT_CERT_ENV,
                                                                    CLIENT_KEY_ENV, KEY_KEY, TLS_DIR)
from services.orchestrator.executors.kubernetes_settings import KubernetesSettings

SPEC_DIR = "/etc/privtune/spec"
SPEC_FILE = f"{SPEC_DIR}/spec.json"
SCRATCH_DIR = "/var/privtune/scratch"
CONTAINER_NAME = "pytorch"               # the container the training operator injects rendezvous env into
RENDEZVOUS_PORT_NAME = "pytorchjob-port"  # the port name the training operator looks for


@dataclass(frozen=True)
class JobPaths:
    """Where a job's inputs and outputs live, in the claim (``*_subpath``) and in the pod (``*_path``)."""

    dataset_path: str
    dataset_subpath: str
    model_path: str
    model_subpath: str
    output_path: str
    output_subpath: str
    events_file: str


def _segments_ok(path: str) -> bool:
    return all(seg not in ("", ".", "..") for seg in path.split("/"))


def job_paths(settings: KubernetesSettings, tenant_id: str, job_id: str, base_model: str,
              dataset_uri: str, attempt: int) -> JobPaths:
    """Map the job's dataset URI, base model and output folder onto the two claims.

    Raises:
        InvalidArgument: the dataset is not a file:// URI inside the tenant's storage, or an id
            would escape its folder.
    """
    tenant_root = f"{settings.storage_root_path}/{tenant_id}"
    parts = urlsplit(dataset_uri)
    path = unquote(parts.path).rstrip("/")
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not path.startswith(tenant_root + "/"):
        raise InvalidArgument(f"dataset_uri {dataset_uri!r} is not inside tenant {tenant_id!r}'s storage "
                              f"{settings.storage_root_uri.rstrip('/')}/{tenant_id}/; the Kubernetes executor mounts "
                              "only datasets registered in the tenant storage on storage_pvc")
    dataset_key = path[len(tenant_root) + 1:]
    if not _segments_ok(dataset_key):
        raise InvalidArgument(f"dataset_uri {dataset_uri!r} has an empty, '.' or '..' path segment")
    if not job_id or "/" in job_id or not _segments_ok(job_id):
        raise InvalidArgument(f"job id {job_id!r} cannot name a storage folder (no '/', '.' or '..')")
    if not base_model or "/" in base_model or not _segments_ok(base_model):
        raise InvalidArgument(f"base model id {base_model!r} cannot name a model store folder (no '/', '.' or '..')")
    output_key = f"training/{job_id}"  # gpu_worker.job.job_prefix
    if f"{dataset_key}/".startswith(f"{output_key}/") or f"{output_key}/".startswith(f"{dataset_key}/"):
        raise InvalidArgument(f"dataset_uri {dataset_uri!r} overlaps the job's output folder {output_key}/; "
                              "train on a registered dataset version, not on a job's outputs")
    output_path = f"{tenant_root}/{output_key}"
    return JobPaths(
        dataset_path=path, dataset_subpath=f"{tenant_id}/{dataset_key}",
        model_path=f"{settings.models_mount_path}/{base_model}", model_subpath=base_model,
        output_path=output_path, output_subpath=f"{tenant_id}/{output_key}",
        events_file=f"{output_path}/events-{attempt}.jsonl")


def _quantity_cpu(cores: float) -> str:
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def container_resources(settings: KubernetesSettings, processes: int, gpus: bool) -> dict[str, Any]:
    """Requests for ``processes`` training processes; memory is limited to its request, CPU is not
    (a CPU limit throttles data loading); accelerators are requested and limited alike."""
    memory = f"{round(settings.memory_per_process_gib * 1024 * processes)}Mi"
    requests: dict[str, str] = {"cpu": _quantity_cpu(settings.cpu_per_process * processes), "memory": memory}
    limits: dict[str, str] = {"memory": memory}
    if gpus:
        requests[settings.gpu_resource] = limits[settings.gpu_resource] = str(processes)
    return {"requests": requests, "limits": limits}


def container_env(settings: KubernetesSettings, client_tls: bool = False) -> list[dict[str, str]]:
    """No network, no writable home: every cache goes to /tmp and every hub client is offline.

    ``client_tls``: the pod's certificate files are mounted; their paths (never their content) are set
    after ``extra_env``, which cannot point them elsewhere."""
    env = {
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "XDG_CACHE_HOME": "/tmp/.cache",
        "HF_HOME": "/tmp/.cache/huggingface",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRITON_CACHE_DIR": "/tmp/.cache/triton",
        "OMP_NUM_THREADS": str(max(1, int(settings.cpu_per_process))),
    }
    env.update(settings.extra_env)
    if client_tls:
        env.update({CLIENT_CERT_ENV: f"{TLS_DIR}/{CERT_KEY}", CLIENT_KEY_ENV: f"{TLS_DIR}/{KEY_KEY}",
                    CA_ENV: f"{TLS_DIR}/{CA_KEY}"})
    return [{"name": name, "value": value} for name, value in env.items()]


def security_context(settings: KubernetesSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security contexts: non-root, no privilege, no capabilities, read-only root."""
    seccomp = {"type": "RuntimeDefault"}
    pod: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": settings.run_as_user,
                           "runAsGroup": settings.run_as_group, "seccompProfile": seccomp}
    if settings.fs_group is not None:
        pod.update(fsGroup=settings.fs_group, fsGroupChangePolicy="OnRootMismatch")
    container = {"runAsNonRoot": True, "runAsUser": settings.run_as_user, "runAsGroup": settings.run_as_group,
                 "allowPrivilegeEscalation": False, "privileged": False, "readOnlyRootFilesystem": True,
                 "capabilities": {"drop": ["ALL"]}, "seccompProfile": seccomp}
    return pod, container


def volumes_and_mounts(settings: KubernetesSettings, paths: JobPaths, config_map: str,
                       credentials_secret: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {"name": "spec", "configMap": {"name": config_map, "defaultMode": 0o444,
                                       "items": [{"key": "spec.json", "path": "spec.json"}]}},
        {"name": "dataset", "persistentVolumeClaim": {"claimName": settings.storage_pvc, "readOnly": True}},
        {"name": "base-model", "persistentVolumeClaim": {"claimName": settings.models_pvc, "readOnly": True}},
        {"name": "job-output", "persistentVolumeClaim": {"claimName": settings.storage_pvc, "readOnly": False}},
        {"name": "scratch", "emptyDir": {"sizeLimit": settings.scratch_size}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Gi"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}},
    ]
    mounts = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "dataset", "mountPath": paths.dataset_path, "subPath": paths.dataset_subpath, "readOnly": True},
        {"name": "base-model", "mountPath": paths.model_path, "subPath": paths.model_subpath, "readOnly": True},
        {"name": "job-output", "mountPath": paths.output_path, "subPath": paths.output_subpath, "readOnly": False},
        {"name": "scratch", "mountPath": SCRATCH_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    if credentials_secret:
        volumes.append({"name": "client-tls", "secret": {"secretName": credentials_secret,
                                                         "defaultMode": _secret_mode(settings)}})
        mounts.append({"name": "client-tls", "mountPath": TLS_DIR, "readOnly": True})
    return volumes, mounts


def _secret_mode(settings: KubernetesSettings) -> int:
    """Secret files belong to root (and to ``fs_group`` when set). The one container runs as a
    non-root uid, so it can read its key only through the group (0440 with ``fs_group``) or,
    without one, as "other" (0444): no other user or container exists in the pod to read it."""
    return 0o440 if settings.fs_group is not None else 0o444


def pod_template(settings: KubernetesSettings, *, labels: Mapping[str, str], annotations: Mapping[str, str],
                 command: list[str], paths: JobPaths, config_map: str, processes: int, gpus: bool,
                 node_selector: Mapping[str, str], priority_class: str | None,
                 rendezvous: bool, credentials_secret: str | None = None) -> dict[str, Any]:
    """The PodTemplateSpec of one replica running ``command`` with ``processes`` training processes.

    ``credentials_secret``: the Secret with the pod's client certificate, mounted read-only at ``TLS_DIR``.
    """
    pod_security, container_security = security_context(settings)
    volumes, mounts = volumes_and_mounts(settings, paths, config_map, credentials_secret)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": command,
        "env": container_env(settings, client_tls=bool(credentials_secret)),
        "resources": container_resources(settings, processes, gpus),
        "volumeMounts": mounts,
        "securityContext": container_security,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if rendezvous:
        container["ports"] = [{"name": RENDEZVOUS_PORT_NAME, "containerPort": settings.rendezvous_port,
                               "protocol": "TCP"}]
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": pod_security,
        "containers": [container],
        "volumes": volumes,
    }
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if gpus and settings.gpu_tolerations:
        spec["tolerations"] = [dict(t) for t in settings.gpu_tolerations]
    if priority_class:
        spec["priorityClassName"] = priority_class
    if settings.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.image_pull_secrets]
    return {"metadata": {"labels": dict(labels), "annotations": dict(annotations)}, "spec": spec}
