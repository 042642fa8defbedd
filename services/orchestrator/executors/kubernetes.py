"""The Kubernetes executor: what the rest of privtune imports (see ``docs/kubernetes.md``).

One concern per module behind it:

* ``kubernetes_settings`` — :class:`KubernetesSettings`, the deployment's configuration;
* ``kubernetes_manifests`` — :func:`render_job` (pure) and :func:`dump_manifests`;
* ``kubernetes_pod`` / ``kubernetes_network`` — the pod template and the NetworkPolicy;
* ``kubernetes_credentials`` — :class:`PodCredentials`, each single-node pod's client certificate and its Secret;
* ``kubernetes_validation`` — :func:`validate_manifests` (offline, strict);
* ``kubernetes_submit`` — :class:`KubernetesExecutor`, the only module that talks to a cluster.
"""

from __future__ import annotations

from services.orchestrator.executors.kubernetes_credentials import PodCredentials, issue_pod_credentials
from services.common.kubernetes_objects import dump_manifests
from services.orchestrator.executors.kubernetes_manifests import GangLayout, plan_gang, render_job
from services.orchestrator.executors.kubernetes_network import render_baseline_policy
from services.orchestrator.executors.kubernetes_settings import ControlPlanePeer, KubernetesSettings
from services.orchestrator.executors.kubernetes_submit import KubernetesExecutor, LaunchReceipt, SubmitError
from services.orchestrator.executors.kubernetes_validation import ManifestError, validate_manifests

__all__ = [
    "ControlPlanePeer", "GangLayout", "KubernetesExecutor", "KubernetesSettings", "LaunchReceipt",
    "ManifestError", "PodCredentials", "SubmitError", "dump_manifests", "issue_pod_credentials", "plan_gang",
    "render_baseline_policy", "render_job", "validate_manifests",
]
