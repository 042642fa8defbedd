"""kill -9 a consumer mid-batch; after a restart every event is applied exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Message, open_bus
from services.common.envelope import Causation, new_envelope
from tests.integration.consume_worker import effects

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
N = 100


def _bus_uri(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/events.db?partitions=2&session_timeout_ms=2000"
    return f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=2"


def _publish_events(bus: EventBus, topic: str, aggregates: int) -> None:
    """N DatasetRegistered events spread over ``aggregates`` keys."""
    bus.publish([Message(topic, f"agg-{i % aggregates}".encode(), codec.encode(new_envelope(
        events_pb2.DatasetRegistered(dataset_id=f"ds-{i}"), subject=f"agg-{i % aggregates}", tenant_id="acme",
        source="test", causation=Causation("t", "c")))) for i in range(N)])


def _worker(bus_uri: str, store_uri: str, topic: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.consume_worker", bus_uri, store_uri, "crash-group", topic, str(N)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _applied(store_uri: str) -> list[int]:
    engine = create_engine(store_uri)
    try:
        with engine.connect() as conn:
            if not engine.dialect.has_table(conn, "effects"):
                return []
            return [row.applied for row in conn.execute(select(effects.c.applied))]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_kill9_mid_batch_then_restart_applies_each_event_once(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    bus_uri = _bus_uri(request, backend, tmp_path)
    store_uri = f"sqlite:///{tmp_path}/store.db"
    topic = f"crash.{uuid.uuid4().hex[:8]}"
    bus = open_bus(bus_uri)
    _publish_events(bus, topic, aggregates=5)

    first = _worker(bus_uri, store_uri, topic)
    deadline = time.monotonic() + 120
    while len(_applied(store_uri)) < 15 and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)  # batches are 20: this lands mid-batch, before its offsets commit
    first.wait()
    killed_at = len(_applied(store_uri))
    assert 15 <= killed_at < N

    second = _worker(bus_uri, store_uri, topic)
    out, _ = second.communicate(timeout=240)
    stats = json.loads(out.strip().splitlines()[-1])
    applied = _applied(store_uri)
    assert len(applied) == N
    assert set(applied) == {1}, "an event was applied twice"
    assert stats["duplicates"] >= 1, "the restart should have been redelivered the uncommitted tail"
    assert stats["applied"] == N - killed_at
    bus.close()


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_two_consumer_processes_share_a_group_and_apply_each_event_once(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    bus_uri = _bus_uri(request, backend, tmp_path)
    store_uri = f"sqlite:///{tmp_path}/store.db"
    topic = f"shared.{uuid.uuid4().hex[:8]}"
    bus = open_bus(bus_uri)
    _publish_events(bus, topic, aggregates=8)
    workers = [_worker(bus_uri, store_uri, topic) for _ in range(2)]
    stats = [json.loads(w.communicate(timeout=240)[0].strip().splitlines()[-1]) for w in workers]
    applied = _applied(store_uri)
    assert len(applied) == N and set(applied) == {1}
    assert sum(s["applied"] for s in stats) == N
    bus.close()
