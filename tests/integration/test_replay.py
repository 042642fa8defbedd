"""`replay` rebuilds every read model from the event store, and the result equals the live state."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine, Table, func, select

from privtune.platform import all_projections
from privtune.v1 import dataset_service_pb2 as pb
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.store.schema import curation_dataset_catalog, dataset_view
from tests.platform_fixtures import dataset_stub, metadata, register, start_platform, wait_settled, wait_until
from privtune.devinfra.kafka import KafkaCluster
from tests.stores import fresh_store_url

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _backends(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> dict[str, str]:
    if kind == "embedded":
        return {}
    # the session's broker is shared by every test: a namespace of our own keeps replay to our events
    return {"bus_uri": f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=3"
                       f"&namespace=replay-{uuid.uuid4().hex[:8]}",
            "store_uri": fresh_store_url(request, "postgresql", tmp_path)}


def _rows(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.mark.parametrize("kind", ["embedded", "kafka+postgresql"])
def test_replay_from_zero_reproduces_the_live_read_models(
        request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> None:
    backends = _backends(request, kind, tmp_path)
    platform = start_platform(tmp_path, **backends)
    try:
        stub = dataset_stub(platform)
        for tenant in ("acme", "globex"):
            for i in range(6):
                register(stub, platform, tenant, f"{tenant}-set-{i}", {f"f{i}.txt": f"{tenant}{i}".encode()})
        for tenant in ("acme", "globex"):
            wait_until(lambda t=tenant: len(stub.ListDatasets(pb.ListDatasetsRequest(),
                                                              metadata=metadata(t)).datasets) == 6,
                       what=f"{tenant}'s read model")
        # every consumer, not only the one the API reads: curation's own catalog follows the same events
        assert platform.engine is not None
        wait_until(lambda: _rows(platform.engine, curation_dataset_catalog) == 12,  # type: ignore[arg-type]
                   what="curation's dataset catalog")
    finally:
        platform.stop()

    config = platform.config
    live = open_store(config.store_uri)
    projections = all_projections(live, config)
    live_state = snapshot(live, projections)
    assert len(live_state[dataset_view.name]) == 12

    scratch = open_store(f"sqlite:///{tmp_path}/scratch.db")
    results = replay(scratch, projections, source=live)
    applied = {r.projection: r.applied for r in results}
    assert applied["ingest.dataset_view"] == 12 and applied["curation.dataset_catalog"] == 12
    assert applied["orchestrator.job_view"] == 0 and applied["curation.job_view"] == 0
    assert snapshot(scratch, projections) == live_state

    # in place: truncate and rebuild the live store itself
    replay(live, projections)
    assert snapshot(live, projections) == live_state


def test_cli_replay_verify_and_events_tail(tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    try:
        stub = dataset_stub(platform)
        for i in range(3):
            register(stub, platform, "acme" if i < 2 else "globex", f"set-{i}")
        wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets) == 2,
                   what="read model")
        wait_settled(platform)  # every read model, not only acme's list: --verify compares them all
    finally:
        platform.stop()
    cli = [sys.executable, "-m", "privtune"]
    out = subprocess.run(cli + ["replay", "--data-dir", str(tmp_path), "--verify"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "ingest.dataset_view from the event store: 3 applied" in out and "equal the live ones" in out
    out = subprocess.run(cli + ["events", "tail", "--data-dir", str(tmp_path), "--tenant", "acme",
                                "--type", "DatasetRegistered"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all('"tenant_id": "acme"' in line for line in lines)
    out = subprocess.run(cli + ["events", "tail", "--data-dir", str(tmp_path), "--type", "TrainingCompleted"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out == ""


def test_replay_after_the_bus_lost_old_segments_rebuilds_the_same_read_models(
        request: pytest.FixtureRequest, kafka_cluster: KafkaCluster, tmp_path: Path) -> None:
    """Topics with a 1 s retention: once the broker deleted every event, replay still rebuilds from the store."""
    namespace = f"retained-{uuid.uuid4().hex[:8]}"
    bus_uri = (f"kafka://{kafka_cluster.bootstrap_servers}?partitions=2&retention_ms=1000&segment_ms=500"
               f"&namespace={namespace}")
    platform = start_platform(tmp_path, bus_uri=bus_uri, store_uri=fresh_store_url(request, "postgresql", tmp_path))
    try:
        stub = dataset_stub(platform)
        for i in range(4):
            register(stub, platform, "acme", f"set-{i}", {f"f{i}.txt": f"acme{i}".encode()})
        wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets) == 4,
                   what="the live read model")
        # every other consumer of the dataset events too, before the broker deletes them (1 s retention)
        wait_until(lambda: _rows(platform.engine, curation_dataset_catalog) == 4,  # type: ignore[arg-type]
                   what="curation's dataset catalog")
    finally:
        platform.stop()
    topic = f"{namespace}.privtune.dataset.events"
    ends = open_bus_end_offsets(kafka_cluster.bootstrap_servers, topic)
    assert sum(ends.values()) == 4
    wait_until(lambda: kafka_cluster.log_start_offsets(topic) == ends, 90,
               "the broker to delete every dataset event (retention)")

    live = open_store(platform.config.store_uri)
    projections = all_projections(live, platform.config)
    scratch = open_store(f"sqlite:///{tmp_path}/scratch.db")
    results = replay(scratch, projections, source=live)
    assert {r.projection: r.applied for r in results}["ingest.dataset_view"] == 4
    assert snapshot(scratch, projections) == snapshot(live, projections)
    assert len(snapshot(scratch, projections)[dataset_view.name]) == 4


def open_bus_end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from services.common.bus import open_bus

    bus = open_bus(f"kafka://{bootstrap}")
    try:
        return bus.end_offsets(topic)
    finally:
        bus.close()
