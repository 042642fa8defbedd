"""ClaimAttempt is a compare-and-set: of many workers claiming one attempt at the same moment,
exactly one wins, on SQLite and on PostgreSQL; a stale or stopped attempt is never granted.
Workers claim on the component listener with their client certificate (mutual TLS)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from gpu_worker.claims import GrpcAttemptClaims
from privtune.platform import Platform
from privtune.v1 import training_attempt_service_pb2 as apb
from privtune.v1 import training_attempt_service_pb2_grpc as apb_grpc
from privtune.v1 import training_service_pb2 as pb
from services.common import eventstore
from services.common.config import PlatformConfig
from tests.orchestrator_fixtures import create_job, job_request, register_version, training_stub
from tests.platform_fixtures import (component_channel, component_credentials, component_metadata, component_target,
                                     metadata, wait_until)
from tests.stores import fresh_store_url
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """The orchestrator alone (no worker): attempts get scheduled and wait to be claimed."""
    (tmp_path / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 1, shared: false}\n")
    config = PlatformConfig.from_env(tmp_path, grpc_address="127.0.0.1:0",
                                     store_uri=fresh_store_url(request, request.param, tmp_path))
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator",)).start()
    yield running
    running.stop()


def _scheduled_job(platform: Platform) -> str:
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    job_id = create_job(platform, job_request(version)).job_id

    def scheduled() -> bool:
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            return any(e.WhichOneof("payload") == "training_scheduled"
                       for e in eventstore.load_stream(conn, TENANT, job_id))

    wait_until(scheduled, 30, "the controller to schedule the job")
    return job_id


def test_exactly_one_of_many_concurrent_claims_wins(platform: Platform) -> None:
    job_id = _scheduled_job(platform)
    barrier = threading.Barrier(8)
    answers: dict[str, bool] = {}

    def claim(worker: str) -> None:
        claims = GrpcAttemptClaims(component_target(platform), credentials=component_credentials(platform))
        barrier.wait()
        answers[worker] = claims.claim(TENANT, job_id, 1, worker).granted
        claims.close()

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [w for w, granted in answers.items() if granted]
    assert len(answers) == 8 and len(winners) == 1
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        claimed = [e.training_attempt_claimed for e in eventstore.load_stream(conn, TENANT, job_id)
                   if e.WhichOneof("payload") == "training_attempt_claimed"]
    assert [c.worker_id for c in claimed] == winners
    # the winning claim asked again (a lost response) is granted again; no other claim ever is, not even
    # a new one of the winner (it would run the attempt a second time)
    stub = apb_grpc.TrainingAttemptServiceStub(component_channel(platform))

    def ask(worker: str, claim_id: str, attempt: int = 1) -> bool:
        return stub.ClaimAttempt(apb.ClaimAttemptRequest(job_id=job_id, attempt=attempt, worker_id=worker,
                                                         claim_id=claim_id,
                                                         executor=apb.TRAINING_EXECUTOR_LOCAL),
                                 metadata=component_metadata(TENANT), timeout=10).granted

    assert ask(winners[0], claimed[0].claim_id)
    assert not ask(winners[0], "a-second-claim")
    assert not ask("late-worker", claimed[0].claim_id)
    assert not ask(winners[0], claimed[0].claim_id, attempt=2)  # an attempt not scheduled
    kube = stub.ClaimAttempt(apb.ClaimAttemptRequest(job_id=job_id, attempt=1, worker_id=winners[0],
                                                     claim_id=claimed[0].claim_id,
                                                     executor=apb.TRAINING_EXECUTOR_KUBERNETES),
                             metadata=component_metadata(TENANT), timeout=10)
    assert not kube.granted and "local executor" in kube.reason  # a pod may not take a local pool's attempt


def test_a_claim_is_refused_for_another_tenant_and_after_a_cancel(platform: Platform) -> None:
    job_id = _scheduled_job(platform)
    stub = apb_grpc.TrainingAttemptServiceStub(component_channel(platform))
    with pytest.raises(grpc.RpcError) as err:  # another tenant's job does not exist for globex
        stub.ClaimAttempt(apb.ClaimAttemptRequest(job_id=job_id, attempt=1, worker_id="w1", claim_id="c1"),
                          metadata=component_metadata("globex"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    training_stub(platform).CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=job_id), metadata=metadata(),
                                              timeout=10)
    late = stub.ClaimAttempt(apb.ClaimAttemptRequest(job_id=job_id, attempt=1, worker_id="w1", claim_id="c1"),
                             metadata=component_metadata("acme"), timeout=10)
    assert not late.granted and "cancelled" in late.reason
    with pytest.raises(grpc.RpcError) as err:
        stub.ClaimAttempt(apb.ClaimAttemptRequest(job_id=job_id, attempt=0, worker_id="w1", claim_id="c1"),
                          metadata=component_metadata("acme"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_claim_the_orchestrator_refuses_is_an_answer_not_an_outage(platform: Platform) -> None:
    """A command naming a job the tenant does not have (forged, or of a wiped store) is refused at once:
    the worker marks it done instead of retrying it forever and blocking its partition."""
    claims = GrpcAttemptClaims(component_target(platform), give_up_after=5,
                               credentials=component_credentials(platform))
    answer = claims.claim(TENANT, "tj-000000000000000000000000", 1, "w1")
    claims.close()
    assert not answer.granted and "NOT_FOUND" in answer.reason
