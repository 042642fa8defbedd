"""PostgreSQL stopped for 20 s under a running distributed platform, with work in flight.

Every service runs (Kafka bus, PostgreSQL store, a training worker training a job, a
client registering datasets). Mid-job the database goes away for 20 s and comes back on
the same port. Nobody restarts anything: every loop (outbox relay, consumers, the
controller, the report recorder, the curation worker) retries on its own; the gRPC health
status turns NOT_SERVING while they cannot recover and SERVING again after; nothing is
lost and nothing is applied twice (each dataset once, the job completes once, every
report recorded once, read models equal a replay of the event store).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import func, select

from privtune.devinfra.postgres import PostgresServer
from privtune.platform import Platform, all_projections
from privtune.v1 import dataset_service_pb2 as ds_pb
from services.common import eventstore
from services.common.config import PlatformConfig
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.store.schema import dataset_view, outbox
from tests.orchestrator_fixtures import create_job, job_request, register_version
from tests.platform_fixtures import channel, dataset_stub, metadata, put_files, wait_until
from tests.training_fixtures import TENANT, make_models

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
OUTAGE_S = 20


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A server of our own: this test stops it (stop_server keeps its data and port) and starts it again."""
    server = PostgresServer().start()
    yield server
    server.stop()


def _health(target: str) -> int:
    with channel(target) as api:
        try:
            return health_pb2_grpc.HealthStub(api).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return -1


def test_a_store_outage_heals_by_itself_and_loses_nothing(kafka_bootstrap: str, postgres: PostgresServer,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVTUNE_HEARTBEAT_S", "0.5")
    monkeypatch.setenv("PRIVTUNE_WORKER_LOST_AFTER_S", "90")  # the outage must not read as a dead worker
    (tmp_path / "pools.yaml").write_text("pools:\n  - {name: local, gpu_type: cpu, gpus: 1, shared: false}\n")
    config = PlatformConfig.from_env(
        tmp_path, grpc_address="127.0.0.1:0", store_uri=postgres.url,
        bus_uri=f"kafka://{kafka_bootstrap}?partitions=2&namespace=outage-{uuid.uuid4().hex[:8]}")
    make_models(config.models_dir)
    platform = Platform(config, unhealthy_after_s=3.0).start()
    engine = open_store(postgres.url)
    health: list[tuple[float, int]] = []
    stop_watch = threading.Event()

    def watch_health() -> None:
        # one channel for the whole watch: opening and closing one per sample can stall in close()
        # when the training worker forks its child process at the same moment
        with channel(platform) as api:
            stub = health_pb2_grpc.HealthStub(api)
            while not stop_watch.wait(0.25):
                try:
                    status = stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    status = -1
                if not stop_watch.is_set():  # a check that overlapped the shutdown says nothing about recovery
                    health.append((time.monotonic(), status))

    watcher = threading.Thread(target=watch_health, daemon=True)
    created: dict[str, str] = {}  # request_id -> dataset_id

    def register_until_done(i: int) -> None:
        """A client that retries each create with its request_id until it gets an answer."""
        request_id = f"req-{i}"
        uri = put_files(platform, TENANT, f"set-{i}", {"data.jsonl": f'{{"prompt": "p{i}"}}\n'.encode()})
        request = ds_pb.CreateDatasetRequest(name=f"set-{i}", storage_uri=uri, classification=2,
                                             request_id=request_id)
        while True:
            try:
                created[request_id] = dataset_stub(platform).CreateDataset(
                    request, metadata=metadata(), timeout=10).dataset.dataset_id
                return
            except grpc.RpcError:
                time.sleep(0.5)

    try:
        version = register_version(engine, config.storage_uri)
        job_id = create_job(platform, job_request(version, max_steps=60, checkpoint_every=10)).job_id

        def kinds() -> list[str]:
            with engine.connect() as conn:
                return [e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT, job_id)]

        wait_until(lambda: "training_progress" in kinds(), 120, "the job to be training")
        for i in range(3):
            register_until_done(i)
        watcher.start()
        clients = [threading.Thread(target=register_until_done, args=(i,), daemon=True) for i in range(3, 8)]

        postgres.stop_server()
        outage_started = time.monotonic()
        for c in clients:  # requests that arrive while the store is down
            c.start()
        time.sleep(OUTAGE_S)
        postgres.start()
        outage_ended = time.monotonic()

        for c in clients:
            c.join(timeout=120)
        wait_until(lambda: "training_completed" in kinds(), 300, "the job to complete after the outage")
        wait_until(lambda: _health(platform.grpc_target) == health_pb2.HealthCheckResponse.SERVING, 60,
                   "health to return to SERVING")
        # the watcher samples on its own thread, which a loaded machine can starve: let it see the recovery
        # too, so its last sample is not one taken before it
        wait_until(lambda: bool(health) and health[-1][1] == health_pb2.HealthCheckResponse.SERVING, 60,
                   "the health watcher to sample SERVING after the outage")
        wait_until(lambda: len(dataset_stub(platform).ListDatasets(ds_pb.ListDatasetsRequest(page_size=100),
                                                                   metadata=metadata(), timeout=10).datasets) >= 8,
                   60, "the dataset read model to catch up")
        wait_until(lambda: _pending(engine) == 0, 60, "the outbox to drain")
        wait_until(lambda: _registered(engine, job_id), 60, "the completed job's model version in the registry")
        assert all(s.state in ("running", "starting") and s.consecutive_failures == 0
                   for s in platform.supervisor.statuses()), platform.supervisor.statuses()  # type: ignore[union-attr]
        recovered = [s for s in platform.supervisor.statuses() if s.total_failures]  # type: ignore[union-attr]
        assert recovered, "the outage must have been felt by the loops that use the store"
    finally:
        stop_watch.set()
        if watcher.is_alive():
            watcher.join(timeout=10)  # before stop(): a stopping server answers NOT_SERVING
        platform.stop()

    assert not watcher.is_alive(), "the health watcher stalled: its samples stop before the end"
    # health went NOT_SERVING during the outage and SERVING again after it
    during = [status for at, status in health if outage_started + 5 < at < outage_ended]
    after = [status for at, status in health if at > outage_ended]
    assert health_pb2.HealthCheckResponse.NOT_SERVING in during
    assert after and after[-1] == health_pb2.HealthCheckResponse.SERVING, [
        (round(at - outage_ended, 1), status) for at, status in health if at > outage_ended - 2][-60:]

    # nothing lost, nothing twice
    assert len(created) == 8 and len(set(created.values())) == 8
    with engine.connect() as conn:
        rows = conn.execute(select(dataset_view.c.name).where(dataset_view.c.tenant_id == TENANT)).all()
        events = eventstore.load_stream(conn, TENANT, job_id)
    names = [r.name for r in rows if r.name.startswith("set-")]
    assert sorted(names) == sorted(f"set-{i}" for i in range(8))
    recorded = [e.WhichOneof("payload") for e in events]
    assert recorded.count("training_completed") == 1 and recorded.count("training_started") == 1
    steps = [e.training_progress.step for e in events if e.WhichOneof("payload") == "training_progress"]
    assert steps == sorted(set(steps)) and steps[-1] == 60
    assert len({e.id for e in events}) == len(events)
    projections = all_projections(engine, config)
    scratch = open_store(f"sqlite:///{tmp_path}/scratch.db")
    replay(scratch, projections, source=engine)
    assert snapshot(scratch, projections) == snapshot(engine, projections)
    engine.dispose()


def _registered(engine, job_id: str) -> bool:  # type: ignore[no-untyped-def]
    from services.orchestrator.registry_views import model_version_view

    with engine.connect() as conn:
        return conn.execute(select(model_version_view.c.job_id).where(model_version_view.c.job_id == job_id)).first() \
            is not None


def _pending(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(outbox).where(
            outbox.c.published_at_ms.is_(None))).scalar() or 0)
