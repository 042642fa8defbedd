"""`replay` rebuilds every read model from offset 0, and the result equals the live state."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from privtune.platform import all_projections
from privtune.v1 import dataset_service_pb2 as pb
from services.common.bus import open_bus
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.store.schema import dataset_view
from tests.platform_fixtures import dataset_stub, metadata, register, start_platform, wait_until
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
    finally:
        platform.stop()

    config = platform.config
    live = open_store(config.store_uri)
    bus = open_bus(config.bus_uri)
    projections = all_projections(live, config)
    live_state = snapshot(live, projections)
    assert len(live_state[dataset_view.name]) == 12

    scratch = open_store(f"sqlite:///{tmp_path}/scratch.db")
    results = replay(scratch, bus, projections)
    assert {r.projection: r.applied for r in results} == {
        "ingest.dataset_view": 12, "curation.job_view": 0, "orchestrator.job_view": 0,
        "registry.model_version_view": 0, "tracker.run_view": 0}
    assert snapshot(scratch, projections) == live_state

    # in place: truncate and rebuild the live store itself
    replay(live, bus, projections)
    assert snapshot(live, projections) == live_state
    bus.close()


def test_cli_replay_verify_and_events_tail(tmp_path: Path) -> None:
    platform = start_platform(tmp_path)
    try:
        stub = dataset_stub(platform)
        for i in range(3):
            register(stub, platform, "acme" if i < 2 else "globex", f"set-{i}")
        wait_until(lambda: len(stub.ListDatasets(pb.ListDatasetsRequest(), metadata=metadata()).datasets) == 2,
                   what="read model")
    finally:
        platform.stop()
    cli = [sys.executable, "-m", "privtune"]
    out = subprocess.run(cli + ["replay", "--data-dir", str(tmp_path), "--verify"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "3 events applied" in out and "equal the live ones" in out
    out = subprocess.run(cli + ["events", "tail", "--data-dir", str(tmp_path), "--tenant", "acme",
                                "--type", "DatasetRegistered"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all('"tenant_id": "acme"' in line for line in lines)
    out = subprocess.run(cli + ["events", "tail", "--data-dir", str(tmp_path), "--type", "TrainingCompleted"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out == ""
