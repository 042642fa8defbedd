"""The TrainingService over real gRPC with the orchestrator's controller and a real worker pool.

One platform per module (orchestrator + training worker, embedded SQLite bus and store,
two local device slots); tiny models train for real.
"""

from __future__ import annotations

from typing import Iterator

import grpc
import pytest

from privtune.platform import Platform
from privtune.v1 import events_pb2
from privtune.v1 import registry_service_pb2 as rpb
from privtune.v1 import registry_service_pb2_grpc as rpb_grpc
from privtune.v1 import training_service_pb2 as pb
from services.common import eventstore
from services.common.config import PlatformConfig
from tests.orchestrator_fixtures import create_job, job_request, register_version, training_stub
from tests.platform_fixtures import channel, error_details, metadata, wait_until
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration

POLICY = """
version: "acme-2026-11"
privacy: {monthly_epsilon_cap: 6.0, max_epsilon_per_job: 8.0}
limits: {max_seq_length: 1024, max_epochs: 5, max_gpus: 2}
quotas: {max_concurrent_jobs: 2, monthly_gpu_hours: 100.0}
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("orchestrator")
    (data / "pools.yaml").write_text(
        "pools:\n"
        "  - {name: local, gpu_type: cpu, gpus: 2, shared: false}\n"
        "  - {name: shared-a100, gpu_type: a100-80gb, gpus: 8, shared: true, executor: kubernetes}\n")
    (data / "policies").mkdir()
    (data / "policies" / f"{TENANT}.yaml").write_text(POLICY)
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVTUNE_HEARTBEAT_S", "0.5")
    config = PlatformConfig.from_env(data, grpc_address="127.0.0.1:0",
                                     bus_uri=f"sqlite:///{data}/events.db?session_timeout_ms=3000")
    make_models(config.models_dir)
    running = Platform(config, services=("orchestrator", "training")).start()
    yield running
    running.stop()
    mp.undo()


def _kinds(platform: Platform, job_id: str, tenant: str = TENANT) -> list[str]:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return [e.WhichOneof("payload") for e in eventstore.load_stream(conn, tenant, job_id)]


def _wait_state(platform: Platform, job_id: str, state: int, timeout: float = 240) -> pb.TrainingJob:
    stub = training_stub(platform)
    job: list[pb.TrainingJob] = []

    def reached() -> bool:
        job[:] = [stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job_id), metadata=metadata(), timeout=10).job]
        return job[0].state == state

    wait_until(reached, timeout, f"job {job_id} to be {pb.TrainingJobState.Name(state)}")
    return job[0]


def test_a_job_runs_through_the_api_and_its_model_is_registered_with_lineage(platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    created = create_job(platform, job_request(version, name="support-bot", max_steps=8, checkpoint_every=4,
                                               experiment_tags={"team": "retail"}))
    assert created.state == pb.TRAINING_JOB_STATE_QUEUED and created.estimate.peak_memory_bytes > 0
    assert created.policy_version == "acme-2026-11" and created.gpu_pool == "local"
    stub = training_stub(platform)
    watched = [item.event.WhichOneof("payload") for item in stub.WatchTrainingJob(
        pb.WatchTrainingJobRequest(job_id=created.job_id), metadata=metadata(), timeout=240)]
    assert watched[:3] == ["training_requested", "training_queued", "training_scheduled"]
    assert watched[-1] == "training_completed"  # the stream ends once the job is final
    job = _wait_state(platform, created.job_id, pb.TRAINING_JOB_STATE_SUCCEEDED)
    assert job.artifact_sha256 and job.step == 8 and job.attempt == 1
    listed = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(state=pb.TRAINING_JOB_STATE_SUCCEEDED),
                                   metadata=metadata(), timeout=10)
    wait_until(lambda: created.job_id in {j.job_id for j in stub.ListTrainingJobs(
        pb.ListTrainingJobsRequest(state=pb.TRAINING_JOB_STATE_SUCCEEDED), metadata=metadata(), timeout=10).jobs},
        30, "the read model to list the job")
    assert listed is not None
    registry = rpb_grpc.ModelRegistryServiceStub(channel(platform))

    def registered() -> bool:
        return bool(registry.ListModelVersions(rpb.ListModelVersionsRequest(model_name="support-bot"),
                                               metadata=metadata(), timeout=10).versions)

    wait_until(registered, 30, "the model version to be registered")
    lineage = registry.GetLineage(rpb.GetLineageRequest(job_id=created.job_id), metadata=metadata(),
                                  timeout=10).lineage
    assert lineage.model_version_id == "support-bot/v1" and lineage.artifact_sha256 == job.artifact_sha256
    assert lineage.dataset_version_id == version and len(lineage.raw_dataset_checksum_sha256) == 64
    assert lineage.dataset_manifest_sha256 and lineage.base_model_sha256 and lineage.code_version
    assert lineage.config_sha256 and '"max_steps":8' in lineage.config_json and lineage.requested_by == "alice"
    # Tenant isolation: another tenant's token sees nothing of it.
    with pytest.raises(grpc.RpcError) as err:
        stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=created.job_id), metadata=metadata("globex"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    details = error_details(err.value)
    assert details.reason == "TRAINING_JOB_NOT_FOUND" and details.resource == ("privtune.v1.TrainingJob", created.job_id)


def test_restricted_data_is_rejected_with_each_broken_rule_before_anything_runs(platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri,  # type: ignore[arg-type]
                               classification=events_pb2.DATA_CLASSIFICATION_RESTRICTED)
    job = create_job(platform, job_request(version, name="restricted", gpu_pool="shared-a100", max_seq_length=4096))
    assert job.state == pb.TRAINING_JOB_STATE_REJECTED
    rules = [v.rule for v in job.violations]
    assert {"data.restricted_not_on_shared_pool", "data.restricted_requires_dp", "limits.max_seq_length"} <= set(rules)
    assert all(v.remedy for v in job.violations) and job.reason
    assert _kinds(platform, job.job_id) == ["training_requested", "training_rejected"]


def test_the_ledger_refuses_an_over_budget_dp_job_before_any_compute(platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri, n=256)  # type: ignore[arg-type]
    stub = training_stub(platform)
    dp = {"enabled": True, "target_epsilon": 4.0, "target_delta": 1e-5}
    first = create_job(platform, job_request(version, name="dp-1", max_steps=6, micro_batch_size=16, dp=dp))
    assert first.state == pb.TRAINING_JOB_STATE_QUEUED and 0 < first.estimate.planned_epsilon <= 4.0
    ledger = stub.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(), metadata=metadata(), timeout=10).ledger
    assert ledger.monthly_cap == 6.0 and [e.job_id for e in ledger.entries] == [first.job_id]
    second = create_job(platform, job_request(version, name="dp-2", max_steps=6, micro_batch_size=16, dp=dp))
    assert second.state == pb.TRAINING_JOB_STATE_REJECTED
    assert second.violations[0].rule == "privacy.monthly_epsilon_cap" and "epsilon" in second.violations[0].remedy
    assert _kinds(platform, second.job_id) == ["training_requested", "training_rejected"]  # never scheduled
    done = _wait_state(platform, first.job_id, pb.TRAINING_JOB_STATE_SUCCEEDED)
    assert 0 < done.epsilon_spent <= 4.0

    def settled() -> bool:
        entries = stub.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(), metadata=metadata(), timeout=10).ledger.entries
        return entries[0].state == pb.PRIVACY_LEDGER_ENTRY_STATE_SETTLED

    wait_until(settled, 30, "the reservation to be settled with the spent epsilon")
    ledger = stub.GetPrivacyLedger(pb.GetPrivacyLedgerRequest(), metadata=metadata(), timeout=10).ledger
    assert ledger.entries[0].epsilon_spent == pytest.approx(done.epsilon_spent)
    assert ledger.epsilon_remaining == pytest.approx(6.0 - done.epsilon_spent)


def test_cancel_a_queued_and_a_running_job(platform: Platform) -> None:
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    stub = training_stub(platform)
    running = create_job(platform, job_request(version, name="long", max_steps=400, checkpoint_every=5))
    wait_until(lambda: "checkpoint_saved" in _kinds(platform, running.job_id), 180, "a checkpoint")
    cancelled = stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=running.job_id, reason="wrong data"),
                                       metadata=metadata(), timeout=10).job
    assert cancelled.state == pb.TRAINING_JOB_STATE_RUNNING  # asked to checkpoint and stop first
    job = _wait_state(platform, running.job_id, pb.TRAINING_JOB_STATE_CANCELLED, 120)
    kinds = _kinds(platform, running.job_id)
    assert kinds.index("training_stop_requested") < kinds.index("training_preempted") < kinds.index(
        "training_cancelled")
    assert job.last_checkpoint_id and "training_completed" not in kinds
    with pytest.raises(grpc.RpcError) as err:
        stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=running.job_id), metadata=metadata(), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_invalid_requests_get_actionable_errors_and_estimates_write_nothing(platform: Platform) -> None:
    stub = training_stub(platform)
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    # (request, status code, hint in the message, ErrorInfo reason, bad fields, resources named)
    cases = [
        (job_request("dv-missing"), grpc.StatusCode.NOT_FOUND, "curate", "DATASET_VERSION_NOT_FOUND", [],
         ("privtune.v1.DatasetVersion", "dv-missing")),
        (job_request(version, base_model="gpt-9"), grpc.StatusCode.FAILED_PRECONDITION, "privtune models import",
         "BASE_MODEL_NOT_FOUND", ["spec.base_model_id"], ("privtune.v1.BaseModel", "gpt-9")),
        # a typed hyperparameter of 0 means "the default", so out-of-range values stand for a bad config
        (job_request(version, learning_rate=-1), grpc.StatusCode.INVALID_ARGUMENT, "learning_rate",
         "INVALID_TRAINING_CONFIG", ["spec.hyperparameters.learning_rate"], None),
        (job_request(version, checkpoint_every=0), grpc.StatusCode.INVALID_ARGUMENT, "checkpoint_every",
         "INVALID_TRAINING_CONFIG", ["spec.options.checkpoint_every"], None),
        (job_request(version, name=""), grpc.StatusCode.INVALID_ARGUMENT, "name is required", "INVALID_ARGUMENT",
         ["spec.name"], None),
    ]
    for request, code, hint, reason, fields, resources in cases:
        with pytest.raises(grpc.RpcError) as err:
            stub.CreateTrainingJob(request, metadata=metadata(), timeout=30)
        assert err.value.code() == code and hint in err.value.details(), err.value.details()
        details = error_details(err.value)
        assert (details.reason, list(details.fields), details.resource) == (reason, fields, resources), \
            err.value.details()
    estimate = stub.EstimateTrainingJob(
        pb.EstimateTrainingJobRequest(spec=job_request(version, gpu_pool="shared-a100", method="full").spec),
        metadata=metadata(), timeout=30)
    assert estimate.estimate.gpu_type == "a100-80gb" and estimate.estimate.fits
    assert estimate.method == events_pb2.TRAINING_METHOD_FULL and events_pb2.TRAINING_METHOD_FULL in \
        estimate.fitting_methods
    assert estimate.estimate.cost_usd > 0 and estimate.estimate.gpu_hours > 0 and not estimate.violations
    before = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=metadata(), timeout=10).jobs
    stub.EstimateTrainingJob(pb.EstimateTrainingJobRequest(spec=job_request(version).spec), metadata=metadata(),
                             timeout=30)
    assert len(stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=metadata(), timeout=10).jobs) == len(before)


def test_the_cli_estimates_submits_lists_and_reads_the_ledger(platform: Platform,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from privtune.cli import main

    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    common = ["--target", platform.grpc_target, "--tenant", TENANT, "--actor", "bob"]
    request = ["--name", "cli-job", "--base-model", "tiny-llama", "--dataset-version", version,
               "--set", "max_steps=4", "--set", "micro_batch_size=8", "--set", "lora.r=4", "--tag", "team=cli"]
    assert main(["estimate", *common, *request]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["method"] == "TRAINING_METHOD_LORA" and estimate["estimate"]["fits"]
    assert "violations" not in estimate
    assert main(["estimate", *common, *request, "--set", "max_seq_length=100000"]) == 3  # refused: exit 3
    assert "limits.max_seq_length" in capsys.readouterr().err
    assert main(["jobs", "create", *common, *request, "--wait"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1])["training_completed"]["steps"] == "4"

    def listed() -> bool:
        assert main(["jobs", "list", *common, "--state", "succeeded"]) == 0
        return "cli-job" in capsys.readouterr().out

    wait_until(listed, 30, "the CLI to list the finished job")
    assert main(["jobs", "ledger", *common]) == 0
    assert json.loads(capsys.readouterr().out)["monthly_cap"] == 6.0
    assert main(["jobs", "get", *common, "tj-missing"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err
