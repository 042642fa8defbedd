"""A certificate issued for one Kubernetes attempt claims that attempt only, under its own name."""

from __future__ import annotations

import pytest

from services.common.errors import PermissionDenied
from services.common.identity import Caller
from services.orchestrator.attempt_grpc import check_attempt_certificate

pytestmark = pytest.mark.unit
POD = Caller(tenant_id="acme", actor="worker:k8s-job-1a2b-a3", roles=frozenset({"worker"}), via="certificate")


def test_a_pod_certificate_claims_its_own_attempt() -> None:
    check_attempt_certificate(POD, "k8s-job-1a2b-a3", 3)


@pytest.mark.parametrize("worker_id,attempt", [("k8s-job-1a2b-a3", 4), ("k8s-other-a3", 3), ("pool-worker-1", 3)])
def test_a_leaked_pod_key_claims_nothing_else(worker_id: str, attempt: int) -> None:
    with pytest.raises(PermissionDenied) as refused:
        check_attempt_certificate(POD, worker_id, attempt)
    assert refused.value.reason == "WORKER_IDENTITY_MISMATCH"


def test_pool_workers_and_tokens_are_not_bound_to_one_attempt() -> None:
    pool = Caller(tenant_id="acme", actor="worker:training", roles=frozenset({"worker"}), via="certificate")
    check_attempt_certificate(pool, "host-7-pid-42", 9)
    person = Caller(tenant_id="acme", actor="worker:k8s-x-a1", roles=frozenset({"admin"}), via="token")
    check_attempt_certificate(person, "anything", 2)  # a token's subject is not a certificate name
