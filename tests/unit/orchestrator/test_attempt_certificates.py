"""A Kubernetes pod's per-attempt certificate claims that attempt only: its tenant, job and attempt,
under its own worker name (the attacks an adversarial review tried: another tenant's job at the same
attempt number, another attempt, another worker name)."""

from __future__ import annotations

import pytest

from services.common.auth.roles import ATTEMPT, RPC_ROLES
from services.common.errors import PermissionDenied
from services.common.identity import Caller
from services.orchestrator.attempt_grpc import check_attempt_certificate
from services.orchestrator.executors.kubernetes_credentials import pod_identity_name
from services.orchestrator.executors.kubernetes_names import workload_name

pytestmark = pytest.mark.unit
NAME = pod_identity_name(workload_name("tj-acme-own", "acme", 1))


def _pod(tenant: str = "acme") -> Caller:
    """What the auth layer makes of the pod's certificate (the tenant is what the request names)."""
    return Caller(tenant_id=tenant, actor=f"worker:{NAME}", roles=frozenset({ATTEMPT}), via="certificate")


def test_a_pod_certificate_claims_its_own_attempt() -> None:
    check_attempt_certificate(_pod(), "tj-acme-own", NAME, 1)


@pytest.mark.parametrize("tenant,job,worker,attempt", [
    ("victim", "tj-victim", NAME, 1),        # another tenant's job, same attempt number, own worker name
    ("victim", "tj-acme-own", NAME, 1),      # the same job id in another tenant
    ("acme", "tj-acme-other", NAME, 1),      # another job of its own tenant
    ("acme", "tj-acme-own", NAME, 2),        # another attempt of its own job
    ("acme", "tj-acme-own", "pool-worker-7", 1),  # its attempt, posing as another worker
])
def test_a_leaked_pod_key_claims_nothing_else(tenant: str, job: str, worker: str, attempt: int) -> None:
    with pytest.raises(PermissionDenied) as refused:
        check_attempt_certificate(_pod(tenant), job, worker, attempt)
    assert refused.value.reason == "WORKER_IDENTITY_MISMATCH"


def test_a_pod_certificate_can_call_nothing_but_claim_attempt() -> None:
    allowed = {method for method, roles in RPC_ROLES.items() if ATTEMPT in roles}
    assert allowed == {"/privtune.v1.TrainingAttemptService/ClaimAttempt"}  # not ClaimCurationJob, nothing else


def test_pool_workers_and_tokens_are_not_bound_to_one_attempt() -> None:
    pool = Caller(tenant_id="acme", actor="worker:training", roles=frozenset({"worker"}), via="certificate")
    check_attempt_certificate(pool, "tj-any", "host-7-pid-42", 9)
    person = Caller(tenant_id="acme", actor="worker:k8s-x-a1", roles=frozenset({"admin"}), via="token")
    check_attempt_certificate(person, "tj-any", "anything", 2)  # a token's subject is not a certificate name
