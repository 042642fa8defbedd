"""A training pod's identity: a short-lived client certificate of the platform CA, per attempt.

A single-node pod claims its attempt on the orchestrator's component port, which takes mutual
TLS only (docs/security.md). So when ``launch`` submits an attempt it issues the pod a client
certificate named ``spiffe://privtune/worker/k8s-<workload>`` (the pod's worker id too), valid
for the attempt's lifetime plus a margin, and delivers certificate, key and CA as an immutable
Secret that the pod mounts read-only (never env vars or arguments). The key exists only in
memory here and in that Secret: nothing is written under the PKI folder, so certificates do
not pile up with attempts; ``stop`` deletes the Secrets with the job's workloads.

``render_credentials_secret`` is pure; ``issue_pod_credentials`` reads the CA's key.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping


from services.common.auth.pki import SPIFFE_PREFIX, LocalPki, issue_ephemeral_client
from services.orchestrator.executors.kubernetes_settings import KubernetesSettings

# Where the pod finds them (the kubernetes.io/tls Secret's keys, plus the CA), and the env vars
# naming the files: the contract with ``gpu_worker.run_attempt``.
TLS_DIR = "/etc/privtune/tls"
CERT_KEY, KEY_KEY, CA_KEY = "tls.crt", "tls.key", "ca.crt"
CLIENT_CERT_ENV, CLIENT_KEY_ENV, CA_ENV = "PRIVTUNE_CLIENT_CERT", "PRIVTUNE_CLIENT_KEY", "PRIVTUNE_CA"
KIND = "worker"
MARGIN = dt.timedelta(minutes=10)       # beyond the attempt's deadline: a late claim is still answered


@dataclass(frozen=True)
class PodCredentials:
    """One pod's client certificate (PEM), its private key (PEM) and the CA that signed both sides."""

    identity: str               # spiffe://privtune/worker/<name>
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    not_after: dt.datetime

    def __repr__(self) -> str:  # never the key in a log line or a failed assertion
        return f"PodCredentials(identity={self.identity!r}, not_after={self.not_after.isoformat()})"


def pod_identity_name(workload: str) -> str:
    """The component name of an attempt's pod: ``k8s-<workload name>``, as its worker id."""
    return f"k8s-{workload}"


def certificate_lifetime(settings: KubernetesSettings) -> dt.timedelta:
    """How long a pod's certificate lasts: the attempt's hard deadline when there is one (it also
    bounds the time the pod waits to be scheduled), else ``pod_certificate_seconds``; plus a margin."""
    seconds = settings.active_deadline_seconds or settings.pod_certificate_seconds
    return dt.timedelta(seconds=seconds) + MARGIN


def issue_pod_credentials(pki: LocalPki, name: str, valid_for: dt.timedelta,
                          now: dt.datetime | None = None) -> PodCredentials:
    """A fresh EC P-256 key and a client certificate naming ``spiffe://privtune/worker/<name>``.

    Raises:
        ValueError: ``name`` is not a component name (letters, digits, '-', '_', '.').
        FileNotFoundError: the PKI folder has no CA (it is not the platform's PKI folder).
    """
    issued = now or dt.datetime.now(dt.timezone.utc)
    not_after = issued + valid_for
    cert_pem, key_pem = issue_ephemeral_client(pki, KIND, name, not_after, now=issued)
    return PodCredentials(identity=f"{SPIFFE_PREFIX}{KIND}/{name}", cert_pem=cert_pem, key_pem=key_pem,
                          ca_pem=pki.ca.cert.read_bytes(), not_after=not_after)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render_credentials_secret(name: str, namespace: str, labels: Mapping[str, str], job_id: str,
                              credentials: PodCredentials) -> dict[str, Any]:
    """The immutable ``kubernetes.io/tls`` Secret the pod mounts at :data:`TLS_DIR`."""
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls", "immutable": True,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels),
                     "annotations": {"privtune.io/job-id": job_id, "privtune.io/identity": credentials.identity,
                                     "privtune.io/not-after": credentials.not_after.isoformat()}},
        "data": {CERT_KEY: _b64(credentials.cert_pem), KEY_KEY: _b64(credentials.key_pem),
                 CA_KEY: _b64(credentials.ca_pem)},
    }
