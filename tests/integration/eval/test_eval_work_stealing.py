"""Shards reach eval workers by bus partition; an idle worker takes unclaimed shards from the tail.

``ClaimEvalShard`` with ``next_unclaimed`` claims, for a worker with no command of its own, the
highest-numbered shard of a run with no outcome and no live claim, and returns its command. What
an attacker or a crash would try: a claim for another tenant's run, a second idle worker asking
while the first holds the shard, asking after the run is done. Then a real worker: it takes a
shard from the tail, reports it, and when the shard's own command reaches it later commits it
without computing it again (storage holds exactly one output file per shard). A worker that loses
its claim while computing stops at the next chunk and writes nothing.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Iterator

import grpc
import pytest

from privtune.platform import Platform
from privtune.v1 import eval_service_pb2 as epb
from privtune.v1 import eval_service_pb2_grpc as egrpc
from privtune.v1 import eval_work_service_pb2 as wpb
from privtune.v1 import eval_work_service_pb2_grpc as wgrpc
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.auth.channels import component_credentials
from services.common.storage import open_tenant_storage
from services.eval.claims import GrpcShardClaims
from services.eval.computer import ModelShardComputer
from services.eval.suites import load_items
from services.eval.worker import ClaimLost, EvalWorker
from tests.eval_fixtures import register_model
from tests.generators.support_task import support_tickets
from tests.orchestrator_fixtures import register_version
from tests.platform_fixtures import channel, component_channel, component_target, metadata, start_platform, \
    wait_until
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    data = tmp_path_factory.mktemp("eval-stealing")
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVTUNE_MODELS", str(data / "models"))
    make_models(data / "models")
    running = start_platform(data, bus_uri=f"sqlite:///{data}/events.db?session_timeout_ms=3000",
                             storage_root=str(data / "tenants"), services=("eval",))  # no eval worker of its own
    yield running
    running.stop()
    mp.undo()


@pytest.fixture(scope="module")
def model_version(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> str:
    return register_model(platform, tmp_path_factory.mktemp("model"), name="stealing-bot")


@pytest.fixture(scope="module")
def suite_id(platform: Platform) -> str:
    version = register_version(platform.engine, platform.config.storage_uri,  # type: ignore[arg-type]
                               rows=(support_tickets(32, 1), support_tickets(20, 2)))
    return egrpc.EvalServiceStub(channel(platform)).CreateEvalSuite(epb.CreateEvalSuiteRequest(
        name="stealing", dataset_version_id=version, options=epb.EvalSuiteOptions(
            include_general=False, include_safety=False, extraction_items=0)),
        metadata=metadata(), timeout=120).suite.suite_id


def _run(platform: Platform, model_version: str, suite_id: str) -> epb.EvalRun:
    run = egrpc.EvalServiceStub(channel(platform)).CreateEvalRun(epb.CreateEvalRunRequest(
        model_version_id=model_version, suite_id=suite_id, shard_size=5,
        generation=events_pb2.GenerationSettings(max_new_tokens=16, batch_size=4)),
        metadata=metadata(), timeout=120).run
    assert run.shards_total == 4
    return run


def _next(platform: Platform, eval_id: str, worker: str, tenant: str = TENANT) -> wpb.ClaimEvalShardResponse:
    return wgrpc.EvalWorkServiceStub(component_channel(platform)).ClaimEvalShard(wpb.ClaimEvalShardRequest(
        eval_id=eval_id, worker_id=worker, claim_id=uuid.uuid4().hex, lease_seconds=10, next_unclaimed=True),
        metadata=[("x-privtune-tenant", tenant)], timeout=10)


def _worker(platform: Platform, lease_seconds: int = 30) -> tuple[EvalWorker, GrpcShardClaims]:
    config = platform.config
    claims = GrpcShardClaims(component_target(platform), credentials=component_credentials(config, "worker", "eval"))
    computer = ModelShardComputer(config.models_dir, config.storage_uri, config.work_dir / "eval-test", pii=False)
    return EvalWorker(platform.bus, claims, config.storage_uri, computer,  # type: ignore[arg-type]
                      lease_seconds=lease_seconds), claims


def _outputs(platform: Platform, eval_id: str) -> dict[str, int]:
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    prefix = f"eval/runs/{eval_id}/shards/"
    per_shard: dict[str, int] = {}
    for o in storage.list(prefix):
        if o.key.endswith(".jsonl"):
            shard = o.key[len(prefix):].split(".", 1)[0]
            per_shard[shard] = per_shard.get(shard, 0) + 1
    return per_shard


def test_next_unclaimed_takes_the_tail_once_and_never_another_tenants(
        platform: Platform, model_version: str, suite_id: str) -> None:
    run = _run(platform, model_version, suite_id)
    with pytest.raises(grpc.RpcError) as caught:  # another tenant's run does not exist for globex
        _next(platform, run.eval_id, "w-globex", tenant="globex")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    taken = []
    for worker in ("w1", "w2", "w3", "w4"):
        answer = _next(platform, run.eval_id, worker)
        assert answer.granted and not answer.finished
        command = answer.command
        assert command.tenant_id == TENANT and command.WhichOneof("payload") == "eval_shard_scheduled"
        assert command.subject == f"{run.eval_id}.{command.eval_shard_scheduled.shard:05d}"
        taken.append(command.eval_shard_scheduled.shard)
    assert taken == [3, 2, 1, 0]  # the tail first, and no shard twice while its claim is live
    nothing = _next(platform, run.eval_id, "w5")
    assert not nothing.granted and not nothing.finished and not nothing.HasField("command")
    assert "claimed" in nothing.reason


def test_a_lapsed_claim_is_left_to_the_shards_own_command(platform: Platform, model_version: str,
                                                          suite_id: str) -> None:
    """A lapsed claim's worker may still be computing or have reported (the recorder lagging): an idle
    worker must not take it over, or the report would be dropped and the shard could end with no
    outcome and no command. The shard's own command (a claim of that shard) still can."""
    run = _run(platform, model_version, suite_id)
    stub = wgrpc.EvalWorkServiceStub(component_channel(platform))
    tenant = [("x-privtune-tenant", TENANT)]
    first = stub.ClaimEvalShard(wpb.ClaimEvalShardRequest(eval_id=run.eval_id, shard=3, worker_id="slow",
                                                          claim_id="slow-claim", lease_seconds=2),
                                metadata=tenant, timeout=10)
    assert first.granted
    time.sleep(2.5)  # the claim lapses (no renewal)
    answer = _next(platform, run.eval_id, "idle")
    assert answer.granted and answer.command.eval_shard_scheduled.shard == 2  # not the lapsed shard 3
    own = stub.ClaimEvalShard(wpb.ClaimEvalShardRequest(eval_id=run.eval_id, shard=3, worker_id="owner",
                                                        claim_id="owner-claim", lease_seconds=10),
                              metadata=tenant, timeout=10)
    assert own.granted and not own.HasField("command")


def test_an_idle_worker_takes_the_tail_and_skips_its_command_later(
        platform: Platform, model_version: str, suite_id: str) -> None:
    worker, claims = _worker(platform)
    try:
        run = _run(platform, model_version, suite_id)
        # the worker learns of the run from the first command of it that it is handed, and computes that shard
        # (commands of the other test's run, whose shards fake workers claimed, are passed over)
        record = None
        for _ in range(400):
            records = worker.subscription.poll(max_records=1, timeout=0.5)  # type: ignore[union-attr]
            if records and run.eval_id in codec.decode(records[0].value).subject:
                record = records[0]
                break
            worker.subscription.commit(records)  # type: ignore[union-attr]
        assert record is not None, "no shard command of the run reached the worker"
        first = worker.handle(record)
        worker.subscription.commit([record])  # type: ignore[union-attr]
        first_shard = int(first.rsplit(".", 1)[1])
        # idle now (as far as it knows): it takes the highest-numbered shard with no outcome or claim
        assert worker.take_unclaimed_shard()
        tail = 3 if first_shard != 3 else 2
        wait_until(lambda: _outputs(platform, run.eval_id).get(f"{tail:05d}") == 1, 60, "the tail shard's output")

        def recorded() -> list[str]:
            with platform.engine.connect() as conn:  # type: ignore[union-attr]
                return [e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT,
                                                                                 f"{run.eval_id}.{tail:05d}")]

        wait_until(lambda: recorded() == ["eval_shard_scheduled", "eval_shard_completed"], 60,
                   "the stolen shard's report to be recorded")
        # then the worker runs as usual: the tail's own command is committed, not computed again
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
        thread.start()
        try:
            def finished() -> bool:
                got = egrpc.EvalServiceStub(channel(platform)).GetEvalRun(
                    epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=metadata(), timeout=10).run
                return got.state in (epb.EVAL_RUN_STATE_SUCCEEDED, epb.EVAL_RUN_STATE_FAILED)

            wait_until(finished, 300, "the run to finish")
        finally:
            stop.set()
            thread.join(timeout=60)
        final = egrpc.EvalServiceStub(channel(platform)).GetEvalRun(
            epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=metadata(), timeout=10).run
        assert final.state == epb.EVAL_RUN_STATE_SUCCEEDED, final.reason
        assert _outputs(platform, run.eval_id) == {f"{n:05d}": 1 for n in range(4)}
        done = _next(platform, run.eval_id, "late")  # the run is over: nothing more to take
        assert done.finished and not done.granted
    finally:
        worker.close()
        claims.close()


def test_a_lost_claim_stops_the_computation_and_writes_nothing(
        platform: Platform, model_version: str, suite_id: str) -> None:
    run = _run(platform, model_version, suite_id)
    answer = _next(platform, run.eval_id, "doomed")
    shard = answer.command.eval_shard_scheduled
    storage = open_tenant_storage(platform.config.storage_uri, TENANT)
    items = load_items(storage, storage.key_for(shard.suite_uri).rstrip("/"), shard.suite_manifest_sha256,
                       shard.first_item, shard.item_count)
    config = platform.config
    computer = ModelShardComputer(config.models_dir, config.storage_uri, config.work_dir / "eval-lost", pii=False)
    one_at_a_time = events_pb2.EvalShardScheduled()
    one_at_a_time.CopyFrom(shard)
    one_at_a_time.generation.batch_size = 1  # 5 items in chunks of 4: two chunks
    checks: list[int] = []

    def lost() -> bool:
        checks.append(1)
        return True

    with pytest.raises(ClaimLost):
        computer.compute(TENANT, one_at_a_time, items, should_stop=lost)
    assert checks == [1]  # stopped after the first chunk, never started the second
    assert len(computer.compute(TENANT, one_at_a_time, items, should_stop=lambda: False)) == shard.item_count
