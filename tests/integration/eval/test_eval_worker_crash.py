"""kill -9 an eval worker mid-suite: the run still completes, and every shard is computed exactly once.

Two ``privtune serve eval-worker`` processes share the shards of one run, on the embedded bus
and on Kafka. One is killed while the run is under way. Its claimed shard is computed again by
the survivor once the claim lapses; every other shard is computed once. Each computation
writes its own ``<shard>.<claim id>.jsonl`` (an atomic write), so the storage itself counts the
completed computations: exactly one per shard. The run completes exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from privtune.platform import Platform
from privtune.v1 import eval_service_pb2 as epb
from privtune.v1 import eval_service_pb2_grpc as egrpc
from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.storage import open_tenant_storage
from tests.generators.support_task import support_tickets
from tests.orchestrator_fixtures import register_version
from tests.platform_fixtures import channel, component_target, metadata, shared_auth_overrides, start_platform, \
    wait_until
from tests.eval_fixtures import register_model
from tests.training_fixtures import TENANT, make_models

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[3]
LEASE_S = 3


@pytest.fixture(params=["sqlite", "kafka"])
def bus_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/events.db?session_timeout_ms=3000"
    return (f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=4&session_timeout_ms=6000"
            f"&namespace=evalcrash-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def platform(tmp_path: Path, bus_uri: str) -> Iterator[Platform]:
    mp = pytest.MonkeyPatch()
    mp.setenv("PRIVTUNE_MODELS", str(tmp_path / "models"))
    make_models(tmp_path / "models")
    running = start_platform(tmp_path / "data", bus_uri=bus_uri, storage_root=str(tmp_path / "tenants"),
                             services=("eval",))
    yield running
    running.stop()
    mp.undo()


class EvalWorkerProcess:
    def __init__(self, platform: Platform, log: Path) -> None:
        auth = shared_auth_overrides()
        config = platform.config
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "privtune", "serve", "eval-worker", "--bus", config.bus_uri,
             "--storage", config.storage_root, "--data-dir", str(config.data_dir),
             "--eval", component_target(platform)],
            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "PRIVTUNE_PKI_DIR": str(auth["pki_root"]),
                 "PRIVTUNE_AUTH_DIR": str(auth["auth_root"]), "PRIVTUNE_MODELS": str(config.models_dir),
                 "PRIVTUNE_EVAL_THREADS": "1", "PRIVTUNE_EVAL_LEASE_S": str(LEASE_S)})

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()


def test_killing_a_worker_mid_suite_computes_every_shard_once(platform: Platform, tmp_path: Path) -> None:
    model_version = register_model(platform, tmp_path)
    version = register_version(platform.engine, platform.config.storage_uri,  # type: ignore[arg-type]
                               rows=(support_tickets(64, 1), support_tickets(48, 2)))
    stub = egrpc.EvalServiceStub(channel(platform))
    suite = stub.CreateEvalSuite(epb.CreateEvalSuiteRequest(name="crash", dataset_version_id=version, options=(
        epb.EvalSuiteOptions(general_per_category=4, include_safety=False, extraction_items=4))),
        metadata=metadata(), timeout=120).suite
    workers = [EvalWorkerProcess(platform, tmp_path / f"worker-{i}.log") for i in range(2)]
    try:
        run = stub.CreateEvalRun(epb.CreateEvalRunRequest(
            model_version_id=model_version, suite_id=suite.suite_id, shard_size=3,
            generation=events_pb2.GenerationSettings(max_new_tokens=48, batch_size=4)),
            metadata=metadata(), timeout=120).run
        assert run.shards_total >= 15
        storage = open_tenant_storage(platform.config.storage_uri, TENANT)
        prefix = f"eval/runs/{run.eval_id}/shards/"

        def outputs() -> list[str]:
            return [o.key for o in storage.list(prefix) if o.key.endswith(".jsonl")]

        wait_until(lambda: len(outputs()) >= 3, 300, "both workers to be computing shards")
        assert len(outputs()) < run.shards_total, "the suite finished before a worker could be killed"
        workers[0].kill9()

        def finished() -> bool:
            got = stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=metadata(), timeout=10).run
            return got.state in (epb.EVAL_RUN_STATE_SUCCEEDED, epb.EVAL_RUN_STATE_FAILED)

        wait_until(finished, 600, "the run to finish after the kill")
        final = stub.GetEvalRun(epb.GetEvalRunRequest(eval_id=run.eval_id), metadata=metadata(), timeout=10).run
        assert final.state == epb.EVAL_RUN_STATE_SUCCEEDED, final.reason
        assert final.shards_done == final.shards_total == run.shards_total

        per_shard: dict[str, int] = {}
        for key in outputs():
            shard = key[len(prefix):].split(".", 1)[0]
            per_shard[shard] = per_shard.get(shard, 0) + 1
        assert per_shard == {f"{n:05d}": 1 for n in range(run.shards_total)}, per_shard

        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            run_events = [e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT, run.eval_id)]
            recorded = [[e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT,
                                                                                 f"{run.eval_id}.{n:05d}")]
                        for n in range(run.shards_total)]
        assert run_events == ["eval_requested", "eval_completed"]
        assert all(r == ["eval_shard_scheduled", "eval_shard_completed"] for r in recorded), recorded
        assert workers[1].proc.poll() is None, "the surviving worker died too"
    finally:
        for worker in workers:
            worker.stop()
