"""The eval service end to end on the embedded platform, with tiny models trained for real.

A training job that names a suite is evaluated when it completes (EvalRequested is emitted by
the platform, not the test); the run's shards are claimed and computed by the eval worker
pool, recorded once, and finalised into EvalCompleted with every score, interval and gate.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from gpu_worker.base_models import import_hf_folder
from gpu_worker.job import run_job
from gpu_worker.synthetic import write_dataset_version
from privtune.platform import Platform
from privtune.v1 import eval_service_pb2 as epb
from privtune.v1 import eval_service_pb2_grpc as egrpc
from privtune.v1 import eval_work_service_pb2 as wpb
from privtune.v1 import eval_work_service_pb2_grpc as wgrpc
from privtune.v1 import events_pb2
from privtune.v1 import training_service_pb2 as tpb
from services.common import eventstore
from services.common.storage import open_tenant_storage
from tests.orchestrator_fixtures import create_job, job_request, register_version
from tests.platform_fixtures import (channel, component_channel, error_details, metadata, start_platform,
                                     wait_until)
from tests.eval_fixtures import register_model
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, make_models, tiny_spec

pytestmark = pytest.mark.integration
SUITE_OPTIONS = epb.EvalSuiteOptions(general_per_category=2, include_safety=False, extraction_items=4,
                                     max_domain_items=48)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("eval-platform")
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVTUNE_HEARTBEAT_S", "0.5")
    mp.setenv("PRIVTUNE_MODELS", str(data / "models"))
    make_models(data / "models")
    running = start_platform(data, bus_uri=f"sqlite:///{data}/events.db?session_timeout_ms=3000",
                             services=("ingest", "curation", "orchestrator", "training", "eval", "eval-worker"))
    yield running
    running.stop()
    mp.undo()


def _eval(platform: Platform) -> egrpc.EvalServiceStub:
    return egrpc.EvalServiceStub(channel(platform))


def _wait_run(platform: Platform, eval_id: str, timeout: float = 300) -> epb.EvalRun:
    got: list[epb.EvalRun] = []

    def finished() -> bool:
        got[:] = [_eval(platform).GetEvalRun(epb.GetEvalRunRequest(eval_id=eval_id), metadata=metadata(),
                                             timeout=10).run]
        return got[0].state in (epb.EVAL_RUN_STATE_SUCCEEDED, epb.EVAL_RUN_STATE_FAILED)

    wait_until(finished, timeout, f"evaluation {eval_id} to finish")
    return got[0]


def _estimates(run: epb.EvalRun) -> dict[str, epb.MetricEstimate]:
    return {e.name: e for e in run.estimates}


def _suite(platform: Platform, version: str, **options: object) -> epb.EvalSuite:
    o = epb.EvalSuiteOptions()
    o.CopyFrom(SUITE_OPTIONS)
    for name, value in options.items():
        setattr(o, name, value)
    return _eval(platform).CreateEvalSuite(epb.CreateEvalSuiteRequest(
        name="support-desk", dataset_version_id=version, options=o), metadata=metadata(), timeout=120).suite


def _support_version(platform: Platform) -> str:
    """A dataset version of the support-desk task: 256 training tickets, 48 unseen ones held out."""
    return register_version(platform.engine, platform.config.storage_uri,  # type: ignore[arg-type]
                            rows=(support_tickets(256, 1), support_tickets(48, 2)))


def _runs_of(platform: Platform, model_version_id: str) -> list[epb.EvalRun]:
    return list(_eval(platform).ListEvalRuns(epb.ListEvalRunsRequest(model_version_id=model_version_id),
                                             metadata=metadata(), timeout=10).runs)


def _same_content_under_racing_names_is_one_intact_suite(platform: Platform, version: str) -> None:
    """Builds of one content address under different names, at once: one suite, one name, and the stored
    manifest still has the sha256 the suite records (workers verify it before using an item)."""
    options = epb.EvalSuiteOptions()
    options.CopyFrom(SUITE_OPTIONS)
    options.general_per_category = 3
    got: list[epb.EvalSuite] = []

    def create(name: str) -> None:
        got.append(_eval(platform).CreateEvalSuite(epb.CreateEvalSuiteRequest(
            name=name, dataset_version_id=version, options=options), metadata=metadata(), timeout=120).suite)

    threads = [threading.Thread(target=create, args=(f"racer-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and len({s.suite_id for s in got}) == 1
    recorded = _eval(platform).GetEvalSuite(epb.GetEvalSuiteRequest(suite_id=got[0].suite_id), metadata=metadata(),
                                            timeout=10).suite
    assert recorded.name.startswith("racer-")
    assert {(s.name, s.manifest_sha256) for s in got} == {(recorded.name, recorded.manifest_sha256)}
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    with storage.open(f"eval/suites/{recorded.suite_id}/suite.json") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == recorded.manifest_sha256


def test_a_trained_model_is_evaluated_when_its_job_completes_and_beats_its_base(platform: Platform) -> None:
    version = _support_version(platform)
    suite = _suite(platform, version)
    assert suite.suite_id.startswith("suite-") and suite.counts["domain"] == 48
    assert _suite(platform, version).suite_id == suite.suite_id  # content addressed: the same suite again
    _same_content_under_racing_names_is_one_intact_suite(platform, version)
    request = job_request(version, name="support-bot", method="full", max_steps=60, learning_rate=0.003)
    request.spec.evaluation_suite_id = suite.suite_id
    request.spec.eval_gates.win_rate_vs_base_min = 0.5
    request.spec.eval_gates.forgetting_max = 0.5
    job = create_job(platform, request)
    assert job.state == tpb.TRAINING_JOB_STATE_QUEUED, job

    wait_until(lambda: bool(_runs_of(platform, "support-bot/v1")), 300, "the evaluation to be requested")
    auto = _runs_of(platform, "support-bot/v1")[0]
    run = _wait_run(platform, auto.eval_id)
    assert run.state == epb.EVAL_RUN_STATE_SUCCEEDED, run.reason
    assert run.job_id == job.job_id and run.trigger == "training_completed" and run.suite_id == suite.suite_id
    assert (auto.trigger, auto.judge, auto.item_count) == (run.trigger, run.judge, run.item_count)  # list = get
    assert run.shards_done == run.shards_total >= 1
    win = _estimates(run)["win_rate"]  # candidate: the win rate; its interval is of (win rate - 0.5)
    assert win.candidate > 0.5 and win.ci_low > 0, (win, run.reason)
    gates = {g.gate: g for g in run.gates}
    assert gates["win_rate_vs_base_min"].passed and gates["win_rate_vs_base_min"].bound_kind == "lower"
    assert gates["win_rate_vs_base_min"].bound > 0.5, gates["win_rate_vs_base_min"]
    assert run.passed and "passed" in run.reason
    assert {"domain.rouge_l", "general.score", "extraction.exact_rate"} <= set(_estimates(run))

    # only scores travel: the event carries no generated text; the report stays in tenant storage
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        completed = [e for e in eventstore.load_stream(conn, TENANT, run.eval_id)
                     if e.WhichOneof("payload") == "eval_completed"]
    assert len(completed) == 1 and completed[0].eval_completed.results_sha256
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    results = json.loads(storage.open(storage.key_for(completed[0].eval_completed.results_uri)).read())
    assert results["examples"] and results["win_rate"]["value"] == pytest.approx(win.candidate)
    answer = results["examples"][0]["candidate_output"]
    if len(answer) >= 4:
        assert answer not in completed[0].SerializeToString().decode("utf-8", "replace")
    assert storage.exists(storage.key_for(run.report_uri))

    # the registry records the evaluation on the version
    from privtune.v1 import registry_service_pb2 as rpb
    from privtune.v1 import registry_service_pb2_grpc as rgrpc
    registry = rgrpc.ModelRegistryServiceStub(channel(platform))

    def recorded() -> bool:
        v = registry.GetModelVersion(rpb.GetModelVersionRequest(model_version_id="support-bot/v1"), metadata=metadata(),
                                     timeout=10).model_version
        return bool(v.evaluation) and v.evaluation_passed

    wait_until(recorded, 30, "the registry to record the evaluation")


def test_a_regressed_model_fails_its_gates_and_says_which_and_by_how_much(platform: Platform,
                                                                          tmp_path: Path) -> None:
    # the base is competent (trained on the task); the candidate is the same base fine-tuned on wrong answers
    storage_root = platform.config.storage_uri
    storage = open_tenant_storage(storage_root, TENANT)
    write_dataset_version(storage, "datasets/teach/versions/v1", support_tickets(256, 1), support_tickets(16, 3))
    competent = tiny_spec(storage.uri_for("datasets/teach/versions/v1"), "full", job_id="teach", max_steps=60,
                          learning_rate=0.003)
    assert run_job(competent, platform.config.models_dir, storage_root, tmp_path / "teach", lambda *_: None) == 0
    local = tmp_path / "support-base"
    for info in storage.list("training/teach/artifact/"):
        target = local / info.key.removeprefix("training/teach/artifact/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(storage.open(info.key).read())
    folder = local / "merged" if (local / "merged").exists() else local
    import_hf_folder(folder, platform.config.models_dir, "tiny-support")

    suite = _suite(platform, _support_version(platform))
    wrong_rows = [{"messages": [m[0], {"role": "assistant", "content": "I would rather not say"}]}
                  for m in (r["messages"] for r in support_tickets(256, 5))]
    wrong = register_version(platform.engine, storage_root, rows=(wrong_rows, wrong_rows[:16]))  # type: ignore[arg-type]
    request = job_request(wrong, name="regressed", base_model="tiny-support", method="full", max_steps=40,
                          learning_rate=0.003)
    request.spec.evaluation_suite_id = suite.suite_id
    request.spec.eval_gates.win_rate_vs_base_min = 0.5
    request.spec.eval_gates.domain_delta_min = 0.0
    create_job(platform, request)
    wait_until(lambda: bool(_runs_of(platform, "regressed/v1")), 300, "the evaluation to be requested")
    run = _wait_run(platform, _runs_of(platform, "regressed/v1")[0].eval_id)
    assert run.state == epb.EVAL_RUN_STATE_SUCCEEDED and not run.passed, run
    failed = {g.gate: g for g in run.gates if not g.passed}
    assert {"win_rate_vs_base_min", "domain_delta_min"} <= set(failed), run.gates
    for gate in failed.values():
        assert gate.margin < 0 and gate.bound_kind in ("lower", "upper")
    assert run.reason.startswith("failed:") and "win_rate_vs_base_min" in run.reason and "short by" in run.reason


def test_invalid_requests_get_actionable_errors(platform: Platform) -> None:
    stub = _eval(platform)
    cases = [
        (epb.CreateEvalRunRequest(suite_id="default"), grpc.StatusCode.INVALID_ARGUMENT, "model_version_id"),
        (epb.CreateEvalRunRequest(model_version_id="x/v1", suite_id="nope"), grpc.StatusCode.INVALID_ARGUMENT,
         "suite_id"),
        (epb.CreateEvalRunRequest(model_version_id="x/v1", suite_id="default",
                                  gates=events_pb2.EvalGates(win_rate_vs_base_min=1.5)),
         grpc.StatusCode.INVALID_ARGUMENT, "gates.win_rate_vs_base_min"),
        (epb.CreateEvalRunRequest(model_version_id="x/v1", suite_id="default", judge="gpt-judge"),
         grpc.StatusCode.INVALID_ARGUMENT, "judge"),
        (epb.CreateEvalRunRequest(model_version_id="x/v1", suite_id="default", judge="model:not-stored"),
         grpc.StatusCode.FAILED_PRECONDITION, "model store"),
        (epb.CreateEvalRunRequest(model_version_id="nobody/v9", suite_id="default"), grpc.StatusCode.NOT_FOUND,
         "ListModelVersions"),
    ]
    for request, code, hint in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stub.CreateEvalRun(request, metadata=metadata(), timeout=30)
        assert caught.value.code() == code, (request, caught.value.details())
        assert hint in caught.value.details() or any(hint in f for f in error_details(caught.value).fields), \
            caught.value.details()
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateEvalSuite(epb.CreateEvalSuiteRequest(name="s", dataset_version_id="dv-missing"),
                             metadata=metadata(), timeout=30)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:  # a viewer may read, not start evaluations
        stub.CreateEvalRun(epb.CreateEvalRunRequest(model_version_id="x/v1", suite_id="default"),
                           metadata=metadata(roles=["viewer"]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:  # a training request with a malformed suite id is refused
        request = job_request("dv-x", name="bad-suite")
        request.spec.evaluation_suite_id = "../etc"
        create_job(platform, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "evaluation_suite_id" in caught.value.details()


def test_another_tenant_can_neither_read_nor_use_a_tenants_runs_suites_or_shards(platform: Platform,
                                                                               tmp_path: Path) -> None:
    model_version = register_model(platform, tmp_path, name="iso-bot")
    version = _support_version(platform)
    suite = _suite(platform, version, general_per_category=1, extraction_items=1, max_domain_items=4)
    stub = _eval(platform)
    run = stub.CreateEvalRun(epb.CreateEvalRunRequest(model_version_id=model_version, suite_id=suite.suite_id),
                             metadata=metadata(), timeout=60).run
    globex = metadata(tenant="globex")
    refused = [
        lambda: stub.GetEvalSuite(epb.GetEvalSuiteRequest(suite_id=suite.suite_id), metadata=globex, timeout=10),
        lambda: stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=globex, timeout=10),
        lambda: list(stub.WatchEvalRun(epb.WatchEvalRunRequest(eval_id=run.eval_id), metadata=globex, timeout=10)),
        lambda: stub.CreateEvalRun(epb.CreateEvalRunRequest(model_version_id=model_version, suite_id="default"),
                                   metadata=globex, timeout=30),
        lambda: stub.CreateEvalSuite(epb.CreateEvalSuiteRequest(name="steal", dataset_version_id=version),
                                     metadata=globex, timeout=30),
    ]
    for call in refused:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
    assert not stub.ListEvalRuns(epb.ListEvalRunsRequest(), metadata=globex, timeout=10).runs
    # a worker acting for globex cannot claim acme's shard, and a person's token cannot claim at all
    request = wpb.ClaimEvalShardRequest(eval_id=run.eval_id, shard=0, worker_id="w", claim_id="c")
    with pytest.raises(grpc.RpcError) as caught:
        wgrpc.EvalWorkServiceStub(component_channel(platform)).ClaimEvalShard(
            request, metadata=[("x-privtune-tenant", "globex")], timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        wgrpc.EvalWorkServiceStub(channel(platform)).ClaimEvalShard(request, metadata=metadata(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert _wait_run(platform, run.eval_id).state == epb.EVAL_RUN_STATE_SUCCEEDED
    listed = next(r for r in _runs_of(platform, model_version) if r.eval_id == run.eval_id)
    assert listed.trigger == "on_demand" and listed.judge == run.judge and not listed.error_code
