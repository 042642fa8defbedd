"""Many differentially private jobs created at once against one monthly epsilon cap: the ledger
reserves budget for no more of them than the cap allows (a create judges a job against the ledger
it read, and appends its reservation at that ledger's version; a concurrent reservation sends it
back to be judged again), on SQLite and PostgreSQL (where the append and the position read go out
pipelined, and the conflict surfaces at the read)."""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Iterator

import pytest

from privtune.platform import Platform
from privtune.v1 import training_service_pb2 as pb
from tests.orchestrator_fixtures import create_job, job_request, register_version, training_stub
from tests.platform_fixtures import metadata, start_platform
from tests.stores import fresh_store_url
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration

CAP = 6.0  # room for one job of epsilon 4, not two
JOBS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / f"{TENANT}.yaml").write_text(
        'version: "race"\n'
        f"privacy: {{monthly_epsilon_cap: {CAP}, max_epsilon_per_job: 8.0}}\n"
        "quotas: {max_concurrent_jobs: 100, monthly_gpu_hours: 1000.0}\n")
    running = start_platform(tmp_path, services=("orchestrator",),  # no worker: admitted jobs stay queued
                             store_uri=fresh_store_url(request, request.param, tmp_path))
    make_models(running.config.models_dir)
    yield running
    running.stop()


def test_concurrent_dp_creates_never_reserve_more_than_the_cap(platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri, tenant=TENANT, n=256)  # type: ignore[arg-type]
    dp = {"enabled": True, "target_epsilon": 4.0, "target_delta": 1e-5}
    requests = [job_request(version, name=f"dp-{i}", max_steps=6, micro_batch_size=16, dp=dp) for i in range(JOBS)]
    with futures.ThreadPoolExecutor(JOBS) as pool:
        jobs = list(pool.map(lambda r: create_job(platform, r, tenant=TENANT), requests))
    queued = [j for j in jobs if j.state == pb.TRAINING_JOB_STATE_QUEUED]
    rejected = [j for j in jobs if j.state == pb.TRAINING_JOB_STATE_REJECTED]
    assert len(queued) == 1 and len(rejected) == JOBS - 1, [pb.TrainingJobState.Name(j.state) for j in jobs]
    assert all(j.violations[0].rule == "privacy.monthly_epsilon_cap" for j in rejected)
    ledger = training_stub(platform).GetPrivacyLedger(pb.GetPrivacyLedgerRequest(), metadata=metadata(TENANT),
                                                      timeout=10).ledger
    assert [e.job_id for e in ledger.entries] == [queued[0].job_id]
    assert sum(e.epsilon_reserved for e in ledger.entries) <= CAP
