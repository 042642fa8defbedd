"""How the Kubernetes executor is deployed: namespace, image, volumes, network peers, security.

Loaded from the orchestrator's configuration; every field has a default a platform
engineer can start from except the three that name things only the cluster knows
(``image``, ``models_pvc``, ``storage_pvc``) and ``storage_root_uri``.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class ControlPlanePeer(BaseModel):
    """Pods of the platform that training pods may open connections to (nothing else is reachable).

    Example: the event relay or an in-cluster object store, selected by their labels.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="what the peer is, for the docs and error messages (e.g. 'event-relay')")
    pod_labels: dict[str, str] = Field(min_length=1, description="labels of the peer's pods")
    namespace_labels: dict[str, str] | None = Field(
        None, description="labels of the peer's namespace; None: the training namespace itself")
    ports: tuple[int, ...] = Field(min_length=1, description="TCP ports the peer listens on")

    @field_validator("ports")
    @classmethod
    def _ports_in_range(cls, ports: tuple[int, ...]) -> tuple[int, ...]:
        for port in ports:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is outside 1-65535")
        return ports


class KubernetesSettings(BaseModel):
    """Everything the executor needs to know about the cluster; no credentials (those come from kubeconfig)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field("privtune-training", pattern=DNS1123_LABEL,
                           description="namespace the training objects are created in")
    image: str = Field(min_length=1, description="image with privtune, torch and torchrun (registry/privtune:1.2.3)")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str = Field("privtune-training", pattern=DNS1123_LABEL,
                                 description="service account of training pods; its token is never mounted")

    models_pvc: str = Field(pattern=DNS1123_LABEL, description="claim holding the model store (read-only in pods)")
    models_mount_path: str = Field("/var/privtune/models", description="where the model store appears in pods")
    storage_pvc: str = Field(pattern=DNS1123_LABEL, description=(
        "ReadWriteMany claim whose root is the platform's file:// tenant storage root: the dataset version is "
        "mounted from it read-only, the job's training/<job_id>/ folder (checkpoints, artifact, events) read-write"))
    storage_root_uri: str = Field(description=(
        "the tenant storage root as the platform sees it (file:///data/tenants); pods see it at the same path, "
        "so URIs in specs and events mean the same inside and outside the cluster"))
    bus_uri: str = Field(min_length=1, description=(
        "the event bus as training pods reach it (kafka://kafka.privtune:9092): pods publish their reports on "
        "privtune.training.reports and receive stop commands on privtune.training.control"))
    orchestrator_address: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$", description=(
        "host:port of the orchestrator's component (mutual TLS) listener as pods reach it, the API port + 1 "
        "unless PRIVTUNE_COMPONENT_GRPC says otherwise: a pod claims its attempt there with its client certificate "
        "before it starts; the orchestrator's server certificate must name this host (list the orchestrator and "
        "the bus in control_plane so the NetworkPolicy lets pods reach them)"))
    pod_certificate_seconds: int = Field(86400, ge=300, description=(
        "validity of each attempt's client certificate when active_deadline_seconds is not set (with it, the "
        "deadline): it must outlast the pod's wait to be scheduled, up to its claim; 10 minutes are added"))
    create_output_folder: bool = Field(True, description=(
        "create <root>/<tenant>/training/<job_id>/ before launching (else kubelet creates it owned by root)"))

    cpu_per_process: float = Field(8.0, gt=0, description="CPU cores requested per training process (one per GPU)")
    memory_per_process_gib: float = Field(64.0, gt=0, description="memory request and limit per training process")
    scratch_size: str = Field("200Gi", description="size limit of the emptyDir holding local checkpoints")
    shm_size: str = Field("16Gi", description="size of /dev/shm (NCCL and data loaders need more than 64Mi)")
    gpu_resource: str = Field("nvidia.com/gpu", description="extended resource name of one accelerator")
    gpu_tolerations: tuple[dict[str, str], ...] = Field(
        ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
        description="tolerations added to pods of GPU pools (the taints GPU nodes carry)")
    priority_classes: dict[int, str] = Field(default_factory=dict, description=(
        "minimum job priority -> PriorityClass name; a job gets the class of the highest threshold it reaches"))

    control_plane: tuple[ControlPlanePeer, ...] = Field((), description="the only pods training pods may reach")
    dns_namespace_labels: dict[str, str] = Field({"kubernetes.io/metadata.name": "kube-system"})
    dns_pod_labels: dict[str, str] = Field({"k8s-app": "kube-dns"})

    run_as_user: int = Field(1000, ge=1, description="non-root uid of the training processes")
    run_as_group: int = Field(1000, ge=1)
    fs_group: int | None = Field(None, ge=1, description=(
        "supplemental group of the pod's volumes; off by default because kubelet would chown the whole "
        "shared storage claim, every tenant's files, to it"))

    ttl_seconds_after_finished: int = Field(86400, ge=0, description="finished workloads are removed after this")
    termination_grace_seconds: int = Field(300, ge=1, description="time to write a checkpoint after SIGTERM")
    active_deadline_seconds: int | None = Field(None, ge=1, description="hard wall-clock cap of one attempt")
    rendezvous_port: int = Field(23456, ge=1, le=65535, description="torchrun master port of PyTorchJobs")
    extra_env: dict[str, str] = Field(default_factory=dict, description="added to the training container's env")
    kubernetes_version: str = Field("1.31", pattern=r"^1\.\d+$",
                                    description="Kubernetes version whose schemas manifests are checked against")

    @field_validator("storage_root_uri")
    @classmethod
    def _file_root(cls, uri: str) -> str:
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"storage_root_uri {uri!r} must be an absolute file:// URI: the executor mounts tenant "
                             "storage from storage_pvc at that path (s3:// roots are not supported yet)")
        return uri

    @field_validator("extra_env")
    @classmethod
    def _no_store_credentials(cls, env: dict[str, str]) -> dict[str, str]:
        if "PRIVTUNE_STORE" in env or any(v.startswith(("postgresql", "sqlite:")) for v in env.values()):
            raise ValueError("extra_env gives training pods a metadata store: pods report on the bus and claim "
                             "attempts from the orchestrator, they never need the store's credentials")
        return env

    @field_validator("bus_uri")
    @classmethod
    def _bus_without_store(cls, uri: str) -> str:
        if not uri.startswith(("kafka://", "sqlite:///")):
            raise ValueError(f"bus_uri {uri[:64]!r} must be a kafka:// (or, for tests, sqlite:///) bus URI")
        return uri

    @field_validator("models_mount_path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"models_mount_path {path!r} must be an absolute path without '..'")
        return path.rstrip("/") or "/"

    @property
    def storage_root_path(self) -> str:
        """The storage root as a path (identical on the platform and in pods)."""
        return unquote(urlsplit(self.storage_root_uri).path).rstrip("/") or "/"

    def priority_class_for(self, priority: int) -> str | None:
        reached = [threshold for threshold in self.priority_classes if priority >= threshold]
        return self.priority_classes[max(reached)] if reached else None
