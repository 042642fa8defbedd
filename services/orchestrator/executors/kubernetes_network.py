"""NetworkPolicies that keep a training job's pods from reaching anything but what they must.

A job's policy selects its pods (by tenant and job id) and lists both policy types, so
everything not listed is denied:

* **egress to DNS** — kube-dns pods, port 53 UDP and TCP: service names (the PyTorchJob
  master, the control-plane peers) must resolve;
* **egress to the control-plane peers** in the settings — exactly their pods and TCP ports
  (e.g. an event relay or an in-cluster object store); nothing outside the cluster;
* **between the job's own pods** — only for a multi-node gang (PyTorchJob): torchrun's
  rendezvous and NCCL/gloo use ports chosen at run time, so all ports between pods of the
  same tenant and job are open, ingress and egress; a single-node Job gets no ingress at all.

Policies add up: another policy in the namespace that allows more would widen this one,
so the training namespace should hold only these (and :func:`render_baseline_policy`).
"""

from __future__ import annotations

from typing import Any, Mapping

from services.orchestrator.executors.kubernetes_names import label_value
from services.orchestrator.executors.kubernetes_settings import KubernetesSettings

TENANT_LABEL = "privtune.io/tenant"
JOB_LABEL = "privtune.io/job-id"
COMPONENT_LABEL = "privtune.io/component"


def job_selector(job_id: str, tenant_id: str) -> dict[str, str]:
    """Labels that select exactly one tenant's job's pods (job ids are unique per tenant only)."""
    return {TENANT_LABEL: tenant_id, JOB_LABEL: label_value(job_id)}


def _dns_rule(settings: KubernetesSettings) -> dict[str, Any]:
    return {"to": [{"namespaceSelector": {"matchLabels": dict(settings.dns_namespace_labels)},
                    "podSelector": {"matchLabels": dict(settings.dns_pod_labels)}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _peer_rules(settings: KubernetesSettings) -> list[dict[str, Any]]:
    rules = []
    for peer in settings.control_plane:
        to: dict[str, Any] = {"podSelector": {"matchLabels": dict(peer.pod_labels)}}
        if peer.namespace_labels is not None:
            to["namespaceSelector"] = {"matchLabels": dict(peer.namespace_labels)}
        rules.append({"to": [to], "ports": [{"protocol": "TCP", "port": port} for port in peer.ports]})
    return rules


def allowed_summary(settings: KubernetesSettings, gang: bool) -> str:
    """One line, stored as an annotation, saying what the policy lets through (for auditors)."""
    parts = ["DNS to kube-dns:53"]
    parts += [f"{peer.name}:{','.join(map(str, peer.ports))}" for peer in settings.control_plane]
    if gang:
        parts.append("pods of the same job (all ports, ingress and egress)")
    return "egress only to " + "; ".join(parts) + ("" if gang else "; no ingress")


def render_network_policy(name: str, job_id: str, tenant_id: str, settings: KubernetesSettings,
                          labels: Mapping[str, str], gang: bool) -> dict[str, Any]:
    """Deny-all for the job's pods, except DNS, the control-plane peers and (gangs) each other."""
    selector = job_selector(job_id, tenant_id)
    egress = [_dns_rule(settings), *_peer_rules(settings)]
    ingress: list[dict[str, Any]] = []
    if gang:
        same_job = {"podSelector": {"matchLabels": dict(selector)}}
        egress.append({"to": [same_job]})
        ingress.append({"from": [same_job]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": dict(labels),
                     "annotations": {"privtune.io/allows": allowed_summary(settings, gang)}},
        "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress", "Egress"],
                 "ingress": ingress, "egress": egress},
    }


def render_baseline_policy(settings: KubernetesSettings) -> dict[str, Any]:
    """Namespace-wide deny-all for every privtune training pod, installed once with the executor.

    Per-job policies are created before their pods and deleted after them, but a pod that
    outlives its policy (still terminating after ``stop``) would be unrestricted without it.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "privtune-training-default-deny", "namespace": settings.namespace,
                     "labels": {"app.kubernetes.io/managed-by": "privtune"},
                     "annotations": {"privtune.io/allows": "nothing (per-job policies add DNS and peers)"}},
        "spec": {"podSelector": {"matchLabels": {COMPONENT_LABEL: "training"}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []},
    }
