"""Render one attempt of a training job as Kubernetes objects (pure: no cluster, no I/O).

``render_job`` returns them in the order they must be created:

1. a NetworkPolicy (before any pod exists, so no pod ever runs unrestricted),
2. an immutable ConfigMap holding the spec JSON (configuration only, never data),
3. for a single-node attempt given its pod's credentials: the immutable Secret with its client
   certificate (``kubernetes_credentials``), before the pod that mounts it,
4. the workload: a ``batch/v1`` Job when the gang fits one node, else a Kubeflow
   ``kubeflow.org/v1`` PyTorchJob with one Master and N-1 Workers (elastic off), so the
   whole gang is declared at once.

Kubernetes never retries (``backoffLimit: 0``): the orchestrator owns retries, resuming the
next attempt (a new workload, ``-a<attempt>``) from the last checkpoint in tenant storage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


from services.common.training_spec import TrainingSpec
from services.common.errors import InvalidArgument
from services.orchestrator.executors.kubernetes_credentials import (PodCredentials, pod_identity_name,
                                                                    render_credentials_secret)
from services.orchestrator.executors.kubernetes_names import (config_map_name, credentials_secret_name, label_value,
                                                              network_policy_name, workload_name)
from services.orchestrator.executors.kubernetes_network import (COMPONENT_LABEL, JOB_LABEL, TENANT_LABEL,
                                                                render_network_policy)
from services.orchestrator.executors.kubernetes_pod import SCRATCH_DIR, SPEC_FILE, JobPaths, job_paths, pod_template
from services.orchestrator.executors.kubernetes_settings import KubernetesSettings
from services.orchestrator.resources import GpuType, Pool

POOL_LABEL = "privtune.io/pool"
ATTEMPT_LABEL = "privtune.io/attempt"
PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, PYTORCHJOB_PLURAL = "kubeflow.org", "v1", "pytorchjobs"


@dataclass(frozen=True)
class GangLayout:
    """How a job's processes spread over nodes: the same number on each (torchrun requires it)."""

    nodes: int
    processes_per_node: int


def plan_gang(processes: int, max_per_node: int) -> GangLayout:
    """The fewest nodes that split ``processes`` evenly with at most ``max_per_node`` on each.

    Raises:
        InvalidArgument: ``max_per_node`` is not positive.
    """
    if max_per_node < 1:
        raise InvalidArgument(f"max_gpus_per_node must be at least 1, not {max_per_node}")
    nodes = -(-processes // max_per_node)
    while processes % nodes:
        nodes += 1
    return GangLayout(nodes=nodes, processes_per_node=processes // nodes)


def job_labels(job_id: str, tenant_id: str, pool: Pool, attempt: int) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "privtune-training",
        "app.kubernetes.io/managed-by": "privtune",
        COMPONENT_LABEL: "training",
        TENANT_LABEL: tenant_id,
        JOB_LABEL: label_value(job_id),
        POOL_LABEL: label_value(pool.name),
        ATTEMPT_LABEL: str(attempt),
    }


def _job_args(settings: KubernetesSettings, paths: JobPaths) -> list[str]:
    return ["-m", "gpu_worker.job", SPEC_FILE, "--models-root", settings.models_mount_path,
            "--storage-root", settings.storage_root_uri, "--work-dir", SCRATCH_DIR,
            "--events-file", paths.events_file]


def _check_consistent(job_id: str, tenant_id: str, spec: TrainingSpec, pool: Pool, gpu_name: str,
                      dataset_uri: str, attempt: int) -> None:
    mismatches = [f"{what}: spec has {have!r}, the executor was given {want!r}"
                  for what, have, want in (("job_id", spec.job_id, job_id), ("tenant_id", spec.tenant_id, tenant_id),
                                           ("dataset_uri", spec.dataset_uri, dataset_uri))
                  if have != want]
    if gpu_name != pool.gpu_type:
        mismatches.append(f"gpu type: pool {pool.name!r} has {pool.gpu_type!r}, the executor was given {gpu_name!r}")
    if mismatches:
        raise InvalidArgument("cannot render the Kubernetes job: " + "; ".join(mismatches))
    if attempt < 1:
        raise InvalidArgument(f"attempt must be 1 or more, not {attempt}")


def is_single_node(spec: TrainingSpec, pool: Pool) -> bool:
    """Whether the attempt runs as one pod that claims it (a Job), rather than as a PyTorchJob gang."""
    return plan_gang(spec.num_processes, pool.max_gpus_per_node).nodes == 1


def render_job(job_id: str, tenant_id: str, spec: TrainingSpec, pool: Pool, gpu: GpuType | str,
               settings: KubernetesSettings, dataset_uri: str, attempt: int, *,
               priority: int = 0, credentials: PodCredentials | None = None) -> list[dict[str, Any]]:
    """The NetworkPolicy, spec ConfigMap, (pod certificate Secret) and workload of one attempt, in creation order.

    Args:
        gpu: the pool's accelerator type; ``"cpu"`` requests no accelerators and no GPU tolerations.
        dataset_uri: the dataset version (``file://`` in the tenant's storage); mounted read-only.
        attempt: 1 for the first run; each retry or resume gets a new workload name.
        priority: the job's priority, mapped to a PriorityClass by ``settings.priority_classes``.
        credentials: the single-node pod's client certificate (``launch`` issues one per attempt),
            rendered as the Secret it mounts. Without them (an offline preview) the pod still mounts
            that Secret by name, and the Secret is left out. A gang's pods make no gRPC call, so they
            get none.

    Raises:
        InvalidArgument: the inputs disagree with each other or cannot be mounted safely.
    """
    gpu_name = gpu.name if isinstance(gpu, GpuType) else gpu
    _check_consistent(job_id, tenant_id, spec, pool, gpu_name, dataset_uri, attempt)
    paths = job_paths(settings, tenant_id, job_id, spec.base_model, dataset_uri, attempt)
    layout = plan_gang(spec.num_processes, pool.max_gpus_per_node)
    gang = layout.nodes > 1
    labels = job_labels(job_id, tenant_id, pool, attempt)
    annotations = {"privtune.io/job-id": job_id, "privtune.io/spec-sha256": spec.sha256(),
                   "privtune.io/gpu-type": gpu_name}
    config_map = config_map_name(job_id, tenant_id)
    name = workload_name(job_id, tenant_id, attempt)
    metadata = {"name": name, "namespace": settings.namespace, "labels": labels, "annotations": annotations}
    priority_class = settings.priority_class_for(priority)
    if gang:
        # $(VAR) is expanded by the kubelet from the env the training operator injects.
        command = ["torchrun", f"--nnodes={layout.nodes}", f"--nproc_per_node={layout.processes_per_node}",
                   "--node_rank=$(RANK)", "--master_addr=$(MASTER_ADDR)", "--master_port=$(MASTER_PORT)",
                   *_job_args(settings, paths)]
    else:
        # One node: the pod runs the attempt like a pool worker would (claim from the orchestrator,
        # reports, heartbeats and stop commands on the bus; torchrun --standalone inside for several
        # devices). No store credentials; its client certificate names it like its worker id.
        command = ["python", "-m", "gpu_worker.run_attempt", "--tenant", tenant_id, "--job-id", job_id,
                   "--attempt", str(attempt), "--models-root", settings.models_mount_path,
                   "--storage-root", settings.storage_root_uri, "--work-dir", SCRATCH_DIR,
                   "--bus", settings.bus_uri, "--orchestrator", settings.orchestrator_address,
                   "--worker-id", pod_identity_name(name)]
    secret = None if gang else credentials_secret_name(job_id, tenant_id, attempt)
    template = pod_template(settings, labels=labels, annotations=annotations,
                            command=command, paths=paths, config_map=config_map,
                            processes=layout.processes_per_node, gpus=gpu_name != "cpu",
                            node_selector=pool.node_selector, priority_class=priority_class, rendezvous=gang,
                            credentials_secret=secret)
    workload = (_pytorchjob(metadata, template, layout, settings, priority_class) if gang
                else _batch_job(metadata, template, settings))
    object_labels = {k: v for k, v in labels.items() if k != ATTEMPT_LABEL}  # they outlive one attempt
    objects = [
        render_network_policy(network_policy_name(job_id, tenant_id), job_id, tenant_id, settings,
                              object_labels, gang),
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": config_map, "namespace": settings.namespace, "labels": object_labels,
                      "annotations": {"privtune.io/job-id": job_id}},
         "immutable": True, "data": {"spec.json": spec.canonical_json()}},
    ]
    if secret is not None and credentials is not None:
        if not credentials.identity.endswith(f"/{pod_identity_name(name)}"):
            raise InvalidArgument(f"the pod certificate names {credentials.identity!r}, not the pod of attempt "
                                  f"{attempt} ({pod_identity_name(name)}); issue it for this attempt")
        objects.append(render_credentials_secret(secret, settings.namespace, labels, job_id, credentials))
    return [*objects, workload]


def _batch_job(metadata: dict[str, Any], template: dict[str, Any], settings: KubernetesSettings) -> dict[str, Any]:
    spec: dict[str, Any] = {"backoffLimit": 0, "completions": 1, "parallelism": 1,
                            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished, "template": template}
    if settings.active_deadline_seconds:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def _pytorchjob(metadata: dict[str, Any], template: dict[str, Any], layout: GangLayout,
                settings: KubernetesSettings, priority_class: str | None) -> dict[str, Any]:
    scheduling: dict[str, Any] = {"minAvailable": layout.nodes}  # gang schedulers place all pods or none
    if priority_class:
        scheduling["priorityClass"] = priority_class
    run_policy: dict[str, Any] = {"backoffLimit": 0, "cleanPodPolicy": "Running",
                                  "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
                                  "schedulingPolicy": scheduling}
    if settings.active_deadline_seconds:
        run_policy["activeDeadlineSeconds"] = settings.active_deadline_seconds
    replicas = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template},
                "Worker": {"replicas": layout.nodes - 1, "restartPolicy": "Never",
                           "template": copy.deepcopy(template)}}
    return {"apiVersion": f"{PYTORCHJOB_GROUP}/{PYTORCHJOB_VERSION}", "kind": "PyTorchJob", "metadata": metadata,
            "spec": {"nprocPerNode": str(layout.processes_per_node), "pytorchReplicaSpecs": replicas,
                     "runPolicy": run_policy}}
