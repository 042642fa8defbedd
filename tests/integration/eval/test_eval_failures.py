"""What a broken or forged shard report does: the run fails with a reason, nothing else is held back,
and a report that does not belong to its shard is never recorded.

A test "worker" claims shards through the real EvalWorkService (mutual TLS) and reports on the
real bus, as an eval worker would; the eval service's recorder and finaliser run in the platform.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Iterator

import pytest

from privtune.platform import Platform
from privtune.v1 import eval_service_pb2 as epb
from privtune.v1 import eval_service_pb2_grpc as egrpc
from privtune.v1 import eval_work_service_pb2 as wpb
from privtune.v1 import eval_work_service_pb2_grpc as wgrpc
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import Message
from services.common.envelope import Causation, new_envelope
from services.common.topics import EVAL_REPORTS
from tests.eval_fixtures import register_model
from tests.generators.support_task import support_tickets
from tests.orchestrator_fixtures import register_version
from tests.platform_fixtures import channel, component_channel, metadata, start_platform, wait_until
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("eval-failures")
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVTUNE_MODELS", str(data / "models"))
    make_models(data / "models")
    running = start_platform(data, services=("eval",))  # no eval worker: the test reports for it
    yield running
    running.stop()
    mp.undo()


def _run(platform: Platform, tmp_path: Path, tenant: str) -> epb.EvalRun:
    name = f"bot-{uuid.uuid4().hex[:6]}"
    model_version = register_model(platform, tmp_path, name=name, tenant=tenant)
    version = register_version(platform.engine, platform.config.storage_uri, tenant=tenant,  # type: ignore[arg-type]
                               rows=(support_tickets(32, 1), support_tickets(12, 2)))
    stub = egrpc.EvalServiceStub(channel(platform))
    suite = stub.CreateEvalSuite(epb.CreateEvalSuiteRequest(name="f", dataset_version_id=version, options=(
        epb.EvalSuiteOptions(include_general=False, include_safety=False, extraction_items=0))),
        metadata=metadata(tenant=tenant), timeout=60).suite
    return stub.CreateEvalRun(epb.CreateEvalRunRequest(model_version_id=model_version, suite_id=suite.suite_id,
                                                       shard_size=4), metadata=metadata(tenant=tenant),
                              timeout=60).run


def _shard(platform: Platform, tenant: str, eval_id: str, shard: int) -> tuple[events_pb2.EvalShardScheduled, list]:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        events = eventstore.load_stream(conn, tenant, f"{eval_id}.{shard:05d}")
    return events[0].eval_shard_scheduled, [e.WhichOneof("payload") for e in events]


def _claim_and_report(platform: Platform, tenant: str, command: events_pb2.EvalShardScheduled,
                      outputs_uri: str, items: int) -> None:
    claim_id = uuid.uuid4().hex
    work = wgrpc.EvalWorkServiceStub(component_channel(platform))
    answer = work.ClaimEvalShard(wpb.ClaimEvalShardRequest(eval_id=command.eval_id, shard=command.shard,
                                                           worker_id="test-worker", claim_id=claim_id),
                                 metadata=[("x-privtune-tenant", tenant)], timeout=30)
    assert answer.granted, answer
    report = new_envelope(events_pb2.EvalShardCompleted(
        eval_id=command.eval_id, shard=command.shard, outputs_uri=outputs_uri, outputs_sha256="0" * 64, items=items,
        worker_id="test-worker"), subject=f"{command.eval_id}.{command.shard:05d}", tenant_id=tenant,
        source="privtune/eval-worker", causation=Causation(actor="test-worker", correlation_id="c",
                                                           causation_id=claim_id))
    assert platform.bus is not None
    platform.bus.publish([Message(EVAL_REPORTS, report.subject.encode(), codec.encode(report), id=report.id)])


def _state(platform: Platform, tenant: str, eval_id: str) -> epb.EvalRun:
    return egrpc.EvalServiceStub(channel(platform)).GetEvalRun(epb.GetEvalRunRequest(eval_id=eval_id),
                                                               metadata=metadata(tenant=tenant), timeout=10).run


def _listed(platform: Platform, tenant: str, eval_id: str) -> epb.EvalRun:
    runs = egrpc.EvalServiceStub(channel(platform)).ListEvalRuns(epb.ListEvalRunsRequest(),
                                                                  metadata=metadata(tenant=tenant), timeout=10).runs
    return next((r for r in runs if r.eval_id == eval_id), epb.EvalRun())


def test_unreadable_outputs_fail_their_run_and_never_hold_back_another_tenants(platform: Platform,
                                                                               tmp_path: Path) -> None:
    runs = {tenant: _run(platform, tmp_path, tenant) for tenant in ("acme", "globex")}
    for tenant, run in runs.items():  # every shard "computed", but no outputs file was ever written
        for shard in range(run.shards_total):
            command, _ = _shard(platform, tenant, run.eval_id, shard)
            _claim_and_report(platform, tenant, command, f"{command.outputs_uri}.gone.jsonl", command.item_count)
    for tenant, run in runs.items():
        wait_until(lambda: _state(platform, tenant, run.eval_id).state == epb.EVAL_RUN_STATE_FAILED, 60,
                   f"{tenant}'s run to fail")
        failed = _state(platform, tenant, run.eval_id)
        assert "could not be read or summarised" in failed.reason and failed.error_code == "invalid_outputs"
        # the list (a read model, so it may trail) shows the failure's code and how the run was asked for
        wait_until(lambda: _listed(platform, tenant, run.eval_id).state == epb.EVAL_RUN_STATE_FAILED, 30,
                   f"{tenant}'s run list to show the failure")
        row = _listed(platform, tenant, run.eval_id)
        assert (row.error_code, row.reason, row.trigger) == (failed.error_code, failed.reason, "on_demand")
        assert (row.judge, row.item_count) == (failed.judge, failed.item_count) and row.item_count > 0
    assert platform.healthy  # the finaliser kept going


def test_a_report_naming_another_shards_outputs_is_not_recorded(platform: Platform, tmp_path: Path) -> None:
    run = _run(platform, tmp_path, "acme")
    zero, _ = _shard(platform, "acme", run.eval_id, 0)
    one, _ = _shard(platform, "acme", run.eval_id, 1)
    _claim_and_report(platform, "acme", one, f"{zero.outputs_uri}.x.jsonl", one.item_count)   # shard 0's file
    _claim_and_report(platform, "acme", zero, f"{zero.outputs_uri}.y.jsonl", 999_999)          # a wrong count
    probe, _ = _shard(platform, "acme", run.eval_id, 2)
    _claim_and_report(platform, "acme", probe, f"{probe.outputs_uri}.z.jsonl", probe.item_count)  # a proper one
    wait_until(lambda: _shard(platform, "acme", run.eval_id, 2)[1][-1] == "eval_shard_completed", 60,
               "the proper report to be recorded")
    assert _shard(platform, "acme", run.eval_id, 0)[1] == ["eval_shard_scheduled"]
    assert _shard(platform, "acme", run.eval_id, 1)[1] == ["eval_shard_scheduled"]
