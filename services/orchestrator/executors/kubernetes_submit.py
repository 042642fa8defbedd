"""Submit a rendered training job to a cluster with the official ``kubernetes`` client, and stop it.

Nothing touches a cluster at import: :meth:`KubernetesExecutor.from_config` only records
which kubeconfig (or the in-cluster service account) to use, and the client is built on
the first ``launch`` or ``stop``. Creation is idempotent: an object that already exists
(409) is the same attempt delivered twice, because every attempt has its own workload name.

``launch`` issues a single-node attempt's pod a client certificate from the platform CA
(``kubernetes_credentials``) and creates it as a Secret before the Job; ``stop`` deletes the
job's Secrets with its workloads.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from services.common.auth.pki import LocalPki
from services.common.training_spec import TrainingSpec
from services.common.errors import FailedPrecondition, PrivtuneError
from services.orchestrator.executors.kubernetes_credentials import (PodCredentials, certificate_lifetime,
                                                                    issue_pod_credentials, pod_identity_name)
from services.orchestrator.executors.kubernetes_manifests import (PYTORCHJOB_GROUP, PYTORCHJOB_PLURAL,
                                                                  PYTORCHJOB_VERSION, is_single_node, render_job)
from services.orchestrator.executors.kubernetes_names import config_map_name, network_policy_name, workload_name
from services.orchestrator.executors.kubernetes_network import job_selector
from services.orchestrator.executors.kubernetes_pod import job_paths
from services.orchestrator.executors.kubernetes_settings import KubernetesSettings
from services.orchestrator.executors.kubernetes_validation import validate_manifests
from services.orchestrator.resources import GpuType, Pool

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
RETRYABLE_STATUS = frozenset({0, 408, 429, 500, 502, 503, 504})


class SubmitError(PrivtuneError):
    """The API server refused or could not take an object; ``retryable`` says whether to try again."""

    def __init__(self, kind: str, name: str, status: int, reason: str) -> None:
        self.kind, self.name, self.status = kind, name, status
        self.retryable = status in RETRYABLE_STATUS
        hint = "retry later" if self.retryable else "fix the executor settings or the cluster's RBAC"
        super().__init__(f"could not submit {kind} {name!r}: HTTP {status or 'unreachable'}: {reason}; {hint}")


@dataclass(frozen=True)
class LaunchReceipt:
    """What ``launch`` left in the cluster, and where the job's events will appear."""

    namespace: str
    workload_kind: str
    workload_name: str
    created: tuple[str, ...]            # "Kind/name" created by this call
    already_existed: tuple[str, ...]    # "Kind/name" found in place (a repeated launch)
    events_file: str                    # on the storage claim: the platform tails it like the local worker's


class KubernetesExecutor:
    """Runs training attempts as Kubernetes workloads (see ``docs/kubernetes.md``).

    ``pki``: the platform CA that the orchestrator's component port trusts; single-node pods get
    their client certificates from it. None: nothing that needs one can be launched.
    """

    def __init__(self, settings: KubernetesSettings, api_client_factory: Callable[[], ApiClient],
                 pki: LocalPki | None = None) -> None:
        self.settings = settings
        self.pki = pki
        self._factory = api_client_factory
        self._client: ApiClient | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, settings: KubernetesSettings, kubeconfig: str | None = None, *,
                    context: str | None = None, pki: LocalPki | None = None) -> KubernetesExecutor:
        """Talk to the cluster of ``kubeconfig`` (a path), or, when None, the one this pod runs in.

        Credentials are read when the executor first needs them, not here.
        """
        def factory() -> ApiClient:
            from kubernetes import client, config

            if kubeconfig is not None:
                return config.new_client_from_config(config_file=kubeconfig, context=context)
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            return client.ApiClient(configuration)

        return cls(settings, factory, pki)

    def _api(self) -> ApiClient:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # -- launch ---------------------------------------------------------------------------

    def render(self, job_id: str, tenant_id: str, spec: TrainingSpec, pool: Pool, gpu: GpuType | str,
               dataset_uri: str, attempt: int, *, priority: int = 0,
               credentials: PodCredentials | None = None) -> list[dict[str, Any]]:
        """The validated objects of one attempt (``credentials``: its pod's, see ``prepare``)."""
        manifests = render_job(job_id, tenant_id, spec, pool, gpu, self.settings, dataset_uri, attempt,
                               priority=priority, credentials=credentials)
        validate_manifests(manifests, self.settings.kubernetes_version)
        return manifests

    def issue_credentials(self, job_id: str, tenant_id: str, attempt: int) -> PodCredentials:
        """A fresh client certificate for the pod of one attempt, valid for ``certificate_lifetime``.

        Raises:
            FailedPrecondition: the executor has no platform CA to issue it from.
        """
        if self.pki is None or not self.pki.ca.key.exists():
            raise FailedPrecondition(
                "the Kubernetes executor issues each training pod a client certificate from the platform CA, "
                "and has none: give the executor the platform's PKI folder (PRIVTUNE_PKI_DIR, or "
                "<data dir>/pki)", reason="NO_PLATFORM_CA")
        name = pod_identity_name(workload_name(job_id, tenant_id, attempt))
        return issue_pod_credentials(self.pki, name, certificate_lifetime(self.settings))

    def prepare(self, job_id: str, tenant_id: str, spec: TrainingSpec, pool: Pool, gpu: GpuType | str,
                dataset_uri: str, attempt: int, *, priority: int = 0) -> list[dict[str, Any]]:
        """What ``launch`` creates, validated: a single-node attempt with a newly issued pod certificate.

        Raises:
            FailedPrecondition: a single-node attempt, and no platform CA (see ``issue_credentials``).
        """
        credentials = (self.issue_credentials(job_id, tenant_id, attempt) if is_single_node(spec, pool)
                       else None)
        return self.render(job_id, tenant_id, spec, pool, gpu, dataset_uri, attempt, priority=priority,
                           credentials=credentials)

    def launch(self, job_id: str, tenant_id: str, spec: TrainingSpec, pool: Pool, gpu: GpuType | str,
               dataset_uri: str, attempt: int, *, priority: int = 0) -> LaunchReceipt:
        """Validate, then create the NetworkPolicy, the spec ConfigMap, the pod certificate's Secret (single
        node) and the workload, in that order.

        A repeated launch of the same attempt issues a new certificate, but the Secret already in place
        (409) keeps the first one, which the pod may already be using.

        Raises:
            ManifestError: a rendered object does not validate (nothing was created).
            FailedPrecondition: no platform CA to issue the pod's certificate from (nothing was created).
            SubmitError: the API server refused an object or could not be reached.
        """
        manifests = self.prepare(job_id, tenant_id, spec, pool, gpu, dataset_uri, attempt, priority=priority)
        paths = job_paths(self.settings, tenant_id, job_id, spec.base_model, dataset_uri, attempt)
        if self.settings.create_output_folder:
            # kubelet would create a missing subPath folder owned by root, where training cannot write
            Path(paths.output_path).mkdir(parents=True, exist_ok=True)
        created: list[str] = []
        existing: list[str] = []
        for obj in manifests:
            ref = f"{obj['kind']}/{obj['metadata']['name']}"
            (created if self._create(obj) else existing).append(ref)
        workload = manifests[-1]
        secrets = [obj["metadata"]["name"] for obj in manifests if obj["kind"] == "Secret"]
        if secrets:
            self._give_secret_to_job(secrets[0], workload["metadata"]["name"])
        return LaunchReceipt(namespace=self.settings.namespace, workload_kind=workload["kind"],
                             workload_name=workload["metadata"]["name"], created=tuple(created),
                             already_existed=tuple(existing), events_file=paths.events_file)

    def _create(self, obj: dict[str, Any]) -> bool:
        """Create one object; False when it already exists (409)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = self._api()
        kind, name, namespace = obj["kind"], obj["metadata"]["name"], self.settings.namespace
        strict = {"field_validation": "Strict"}
        try:
            if kind == "PyTorchJob":
                client.CustomObjectsApi(api).create_namespaced_custom_object(
                    PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, namespace, PYTORCHJOB_PLURAL, obj, **strict)
            elif kind == "Job":
                client.BatchV1Api(api).create_namespaced_job(
                    namespace, _as_model(api, client.V1Job, obj), **strict)
            elif kind == "ConfigMap":
                client.CoreV1Api(api).create_namespaced_config_map(
                    namespace, _as_model(api, client.V1ConfigMap, obj), **strict)
            elif kind == "Secret":
                client.CoreV1Api(api).create_namespaced_secret(
                    namespace, _as_model(api, client.V1Secret, obj), **strict)
            elif kind == "NetworkPolicy":
                client.NetworkingV1Api(api).create_namespaced_network_policy(
                    namespace, _as_model(api, client.V1NetworkPolicy, obj), **strict)
            else:
                raise SubmitError(kind, name, 400, "the executor does not create this kind")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise SubmitError(kind, name, exc.status or 0, str(exc.reason)) from exc
        except _transport_errors() as exc:
            raise SubmitError(kind, name, 0, type(exc).__name__) from exc
        return True

    def _give_secret_to_job(self, secret: str, job: str) -> None:
        """Make the Job the owner of its pod's certificate Secret, so the garbage collector deletes the
        Secret with the Job (``ttlSecondsAfterFinished``), not only ``stop``. The Secret is created first
        (the pod never waits for it), so its owner is set afterwards; failing to is logged, not raised:
        the attempt runs either way."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api, namespace = self._api(), self.settings.namespace
        try:
            uid = client.BatchV1Api(api).read_namespaced_job(job, namespace).metadata.uid
            owner = {"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid}
            client.CoreV1Api(api).patch_namespaced_secret(secret, namespace, {"metadata": {"ownerReferences": [owner]}},
                                                          _content_type="application/merge-patch+json")
        except (ApiException, *_transport_errors()) as exc:
            status = getattr(exc, "status", 0) or "unreachable"
            log.warning("Secret %s (the pod certificate of Job %s) stays until stop(): it could not be made the "
                        "Job's dependent (HTTP %s); grant the orchestrator get on jobs and patch on secrets in "
                        "namespace %s", secret, job, status, namespace)

    # -- stop -----------------------------------------------------------------------------

    def stop(self, job_id: str, tenant_id: str) -> None:
        """Delete every attempt's workload (Foreground: pods go first), then every attempt's pod certificate
        Secret, the ConfigMap and the NetworkPolicy.

        Idempotent: objects already gone (404), or a cluster without the PyTorchJob CRD, are fine.
        """
        from kubernetes import client

        api = self._api()
        namespace = self.settings.namespace
        selector = ",".join(f"{k}={v}" for k, v in job_selector(job_id, tenant_id).items())
        foreground = {"propagation_policy": "Foreground"}
        batch, custom = client.BatchV1Api(api), client.CustomObjectsApi(api)
        core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
        config_map, policy = config_map_name(job_id, tenant_id), network_policy_name(job_id, tenant_id)
        self._delete("Job", selector, lambda: batch.delete_collection_namespaced_job(
            namespace, label_selector=selector, **foreground))
        self._delete("PyTorchJob", selector, lambda: custom.delete_collection_namespaced_custom_object(
            PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, namespace, PYTORCHJOB_PLURAL, label_selector=selector,
            **foreground))
        self._delete("Secret", selector, lambda: core.delete_collection_namespaced_secret(
            namespace, label_selector=selector))
        self._delete("ConfigMap", config_map, lambda: core.delete_namespaced_config_map(
            config_map, namespace, **foreground))
        self._delete("NetworkPolicy", policy, lambda: networking.delete_namespaced_network_policy(
            policy, namespace, **foreground))

    @staticmethod
    def _delete(kind: str, what: str, call: Callable[[], object]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            call()
        except ApiException as exc:
            if exc.status != 404:
                raise SubmitError(kind, what, exc.status or 0, str(exc.reason)) from exc
        except _transport_errors() as exc:
            raise SubmitError(kind, what, 0, type(exc).__name__) from exc


def _transport_errors() -> tuple[type[Exception], ...]:
    """What the client raises when the API server cannot be reached (refused, timed out, TLS)."""
    import urllib3

    return (urllib3.exceptions.HTTPError, OSError)


def _as_model(api: ApiClient, model: Any, obj: dict[str, Any]) -> Any:
    """The client's model of ``obj``; refuses one that would not serialize back to the same object."""
    instance = model.from_dict(obj)
    if api.sanitize_for_serialization(instance) != obj:
        raise SubmitError(obj["kind"], obj["metadata"]["name"], 400,
                          "the kubernetes client's model drops or changes fields of the rendered object; "
                          "upgrade the kubernetes package to one that knows every field")
    return instance
