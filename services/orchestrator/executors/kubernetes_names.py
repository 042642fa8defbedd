"""Kubernetes names and label values for a training job, whatever characters its id has.

Job ids may contain uppercase letters, underscores or dots, and be long; Kubernetes wants
DNS-1123 labels (lowercase alphanumerics and '-', at most 63 characters). Names are the
sanitized tenant and job id, shortened, with a hash of the originals appended.
"""

from __future__ import annotations

import hashlib
import re

from services.common.kubernetes_objects import DNS1123_LABEL_RE, LABEL_VALUE_RE, MAX_LABEL, is_dns1123_label  # noqa: F401

# Room left for suffixes: "-a<attempt>" on workloads, then "-worker-<n>" on PyTorchJob pods/services.
BASE_NAME_MAX = 40


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def job_base_name(job_id: str, tenant_id: str) -> str:
    """A DNS-1035 label naming one tenant's job's objects: ``<tenant>-<job>`` shortened, plus a hash.

    Job ids are unique per tenant only, so the hash covers both; it is always added, so
    ``Job_A`` and ``job-a`` (or tenant ``a-b`` job ``c`` and tenant ``a`` job ``b-c``) never
    share objects. It starts with a letter because PyTorchJob replica services need DNS-1035 names.
    """
    readable = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", f"{tenant_id}-{job_id}".lower())).strip("-")
    head = readable[:BASE_NAME_MAX - 9].rstrip("-")
    if not head[:1].isalpha():
        head = f"j{head}"[:BASE_NAME_MAX - 9].rstrip("-")
    return f"{head}-{_digest(f'{tenant_id}/{job_id}')}"


def workload_name(job_id: str, tenant_id: str, attempt: int) -> str:
    """The Job or PyTorchJob of one attempt: an attempt never collides with a previous one still listed."""
    return f"{job_base_name(job_id, tenant_id)}-a{attempt}"


def credentials_secret_name(job_id: str, tenant_id: str, attempt: int) -> str:
    """The Secret holding one attempt's pod certificate (a new one per attempt, like the workload)."""
    return f"{workload_name(job_id, tenant_id, attempt)}-tls"


def config_map_name(job_id: str, tenant_id: str) -> str:
    return f"{job_base_name(job_id, tenant_id)}-spec"


def network_policy_name(job_id: str, tenant_id: str) -> str:
    return f"{job_base_name(job_id, tenant_id)}-net"


def label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a sanitized form with a hash suffix (at most 63)."""
    if len(text) <= MAX_LABEL and LABEL_VALUE_RE.match(text):
        return text
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", text)
    head = clean[:MAX_LABEL - 9].strip("-_.")
    return f"{head}-{_digest(text)}" if head else _digest(text)
