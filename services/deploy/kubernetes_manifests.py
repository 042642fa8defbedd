"""Kubernetes manifests of an inference pool and of the gateway (pure: rendered, then validated offline).

A pool is a Deployment of serving processes (vLLM's OpenAI server, or privtune's transformers
server) over one base model, with a readiness probe on ``/health`` (no traffic before the model is
loaded), a liveness probe with room for a slow start, and a ClusterIP Service the gateway calls.
The base model comes read-only from the model-store volume; adapters are written by the pool
manager into a per-pod ``emptyDir`` after their sha256 is checked. Pods run as non-root with a
read-only root filesystem and no capabilities. The gateway is a Deployment and a Service too.

Every object is validated as strictly as an API server would (services/common/kubernetes_objects.py)
before anyone sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from services.common.kubernetes_objects import (DEFAULT_KUBERNETES_VERSION, ManifestError, is_dns1123_label,
                                                is_quantity, validate_builtin_manifests)

Backend = Literal["vllm", "transformers"]
PORT = 8000
MODELS_MOUNT = "/models"
ADAPTERS_MOUNT = "/adapters"


@dataclass(frozen=True)
class PoolSpec:
    name: str                              # e.g. "support-bot-green": a DNS-1123 label
    deployment_id: str                     # the deployment aggregate's id (a label)
    model_version_id: str                  # the registry's model version this pool serves (an annotation)
    backend: Backend
    image: str
    base_model_id: str                     # folder under the model store
    served_name: str
    replicas: int = 1
    gpus: int = 0
    cpu: str = "2"
    memory: str = "8Gi"
    models_claim: str = "privtune-models"  # PersistentVolumeClaim of the model store
    max_lora_rank: int = 16
    max_loras: int = 4
    max_model_len: int = 4096
    namespace: str = "privtune"
    extra_labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewaySpec:
    image: str
    replicas: int = 2
    name: str = "privtune-gateway"
    namespace: str = "privtune"
    port: int = 8080


def _labels(spec: PoolSpec) -> dict[str, str]:
    """The pool's labels; ``extra_labels`` may add labels but never replace the ones selectors use."""
    own = {"app.kubernetes.io/name": "privtune-inference", "app.kubernetes.io/component": "inference-pool",
           "privtune.dev/pool": spec.name, "privtune.dev/deployment": spec.deployment_id}
    for key in spec.extra_labels:
        name = key.rsplit("/", 1)[-1]
        if key in own or not is_dns1123_label(name.lower()) or len(key) > 253:
            raise ManifestError("Deployment", spec.name, f"metadata.labels.{key}",
                                "extra labels may not replace privtune's own, and keys must be label keys")
    return {**spec.extra_labels, **own}


def _security() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    container = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                 "capabilities": {"drop": ["ALL"]}}
    return pod, container


def _server_args(spec: PoolSpec) -> tuple[list[str], list[dict[str, str]]]:
    model = f"{MODELS_MOUNT}/{spec.base_model_id}"
    # the root filesystem is read-only: every cache goes to /tmp (an emptyDir)
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "XDG_CACHE_HOME", "value": "/tmp/cache"},
           {"name": "HF_HOME", "value": "/tmp/hf"}, {"name": "HF_HUB_OFFLINE", "value": "1"}]
    if spec.backend == "vllm":
        args = ["python", "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name",
                spec.served_name, "--host", "0.0.0.0", "--port", str(PORT), "--max-model-len", str(spec.max_model_len),
                "--enable-lora", "--max-lora-rank", str(spec.max_lora_rank), "--max-loras", str(spec.max_loras),
                "--shutdown-timeout", "30"]
        env += [{"name": "VLLM_ALLOW_RUNTIME_LORA_UPDATING", "value": "True"},
                {"name": "VLLM_CACHE_ROOT", "value": "/tmp/vllm"}, {"name": "VLLM_NO_USAGE_STATS", "value": "1"}]
    else:
        threads = max(1, int(float(spec.cpu.rstrip("m")) / (1000 if spec.cpu.endswith("m") else 1)))
        args = ["python", "-m", "services.deploy.inference_server", "--model-dir", model, "--served-model-name",
                spec.served_name, "--host", "0.0.0.0", "--port", str(PORT), "--max-model-len", str(spec.max_model_len),
                "--threads", str(threads), "--adapters-root", ADAPTERS_MOUNT]
    return args, env


def render_pool(spec: PoolSpec, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[dict[str, Any]]:
    """The pool's Deployment and Service, validated. Raises ManifestError naming the object and field."""
    if not is_dns1123_label(spec.name) or len(spec.name) > 50:
        raise ManifestError("Deployment", spec.name, "metadata.name", "a pool name must be a DNS-1123 label of at "
                                                                      "most 50 characters")
    if not 1 <= spec.replicas <= 64:
        raise ManifestError("Deployment", spec.name, "spec.replicas", "replicas must be from 1 to 64")
    for what, value in (("cpu", spec.cpu), ("memory", spec.memory)):
        if not is_quantity(value):
            raise ManifestError("Deployment", spec.name, f"spec.template.spec.containers.0.resources.requests.{what}",
                                f"{value!r} is not a quantity (e.g. 2, 500m, 8Gi)")
    labels = _labels(spec)
    pod_security, container_security = _security()
    args, env = _server_args(spec)
    resources: dict[str, Any] = {"requests": {"cpu": spec.cpu, "memory": spec.memory},
                                 "limits": {"memory": spec.memory}}
    if spec.gpus:
        resources["limits"]["nvidia.com/gpu"] = str(spec.gpus)
    container = {
        "name": "server", "image": spec.image, "command": args, "env": env,
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5, "failureThreshold": 3},
        "startupProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                         "failureThreshold": 90},  # up to 15 minutes to load a model
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 15, "failureThreshold": 4},
        "resources": resources, "securityContext": container_security,
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
                         {"name": "adapters", "mountPath": ADAPTERS_MOUNT},
                         {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels,
                     "annotations": {"privtune.dev/model-version": spec.model_version_id}},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"privtune.dev/pool": spec.name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"securityContext": pod_security, "automountServiceAccountToken": False,
                         "terminationGracePeriodSeconds": 60, "containers": [container],
                         "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": spec.models_claim,
                                                                                  "readOnly": True}},
                                     {"name": "adapters", "emptyDir": {"sizeLimit": "20Gi"}},
                                     {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
                                     {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}]},
            },
        },
    }
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": {"privtune.dev/pool": spec.name},
                 "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
    }
    # the adapter endpoints change what every caller gets and have no authentication of their own: only the
    # gateway and the deployment service (the pool manager) may reach a pool
    policy = {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {"podSelector": {"matchLabels": {"privtune.dev/pool": spec.name}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {"matchExpressions": [{
                     "key": "app.kubernetes.io/name", "operator": "In",
                     "values": ["privtune-gateway", "privtune-deploy"]}]}}],
                     "ports": [{"port": PORT, "protocol": "TCP"}]}]},
    }
    manifests = [deployment, service, policy]
    validate_builtin_manifests(manifests, kubernetes_version)
    return manifests


def render_gateway(spec: GatewaySpec, kubernetes_version: str = DEFAULT_KUBERNETES_VERSION) -> list[dict[str, Any]]:
    """The gateway's Deployment and Service, validated."""
    labels = {"app.kubernetes.io/name": "privtune-gateway", "app.kubernetes.io/component": "gateway"}
    pod_security, container_security = _security()
    container = {
        "name": "gateway", "image": spec.image,
        "command": ["python", "-m", "privtune", "serve", "gateway"],
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 15, "failureThreshold": 4},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": container_security,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
        "spec": {"replicas": spec.replicas, "selector": {"matchLabels": labels},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"securityContext": pod_security, "automountServiceAccountToken": False,
                                       "terminationGracePeriodSeconds": 120, "containers": [container],
                                       "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}]}}},
    }
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": spec.name, "namespace": spec.namespace, "labels": labels},
               "spec": {"type": "ClusterIP", "selector": labels,
                        "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
    manifests = [deployment, service]
    validate_builtin_manifests(manifests, kubernetes_version)
    return manifests
