"""A batch that fails midway (the store hiccups) is redelivered, never skipped, never applied twice."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import Message, open_bus
from services.common.consumer import EventConsumer
from services.common.envelope import Causation, new_envelope
from services.common.store import open_store
from services.common.store.schema import dataset_view, processed_events
from services.ingest import dataset_view as view
from tests.platform_fixtures import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_failed_batch_is_redelivered_after_the_member_rejoins(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=2&session_timeout_ms=2000")
    else:
        bus = open_bus(f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=2")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    topic = f"recovery.{uuid.uuid4().hex[:8]}"
    n = 40
    bus.publish([Message(topic, f"ds-{i}".encode(), codec.encode(new_envelope(
        events_pb2.DatasetRegistered(dataset_id=f"ds-{i}", name=f"set-{i}"), subject=f"ds-{i}", tenant_id="acme",
        source="test", causation=Causation("t", "c")))) for i in range(n)])

    failures = {"left": 3}

    def flaky_apply(conn, env):  # type: ignore[no-untyped-def]
        view.apply(conn, env)
        if env.dataset_registered.dataset_id in {"ds-7", "ds-21", "ds-33"} and failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("disk I/O error (simulated store hiccup)")

    consumer = EventConsumer(engine, bus, "recovery-group", [topic], flaky_apply)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), kwargs={"max_records": 10})
    thread.start()
    try:
        def rows() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(dataset_view)).scalar() or 0
        wait_until(lambda: rows() == n, timeout=120, what=f"all {n} events applied despite failures")
    finally:
        stop.set()
        thread.join(timeout=60)
        consumer.close()
        bus.close()
    assert failures["left"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(processed_events)).scalar() == n


@pytest.mark.parametrize("batched", [True, False])
def test_events_of_no_interest_are_passed_by_without_a_store_write(tmp_path: Path, batched: bool) -> None:
    """A consumer told which payloads it wants (``Projection.payloads``) applies those, records only their
    ids, commits its offsets past the others, and still dead-letters what it cannot decode."""
    bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=2")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    topic = f"passing.{uuid.uuid4().hex[:8]}"

    def event(i: int) -> bytes:
        payload = events_pb2.DatasetRegistered(dataset_id=f"ds-{i}", name=f"set-{i}") if i % 3 == 0 else \
            events_pb2.CurationFailed(dataset_id=f"ds-{i}")
        return codec.encode(new_envelope(payload, subject=f"ds-{i}", tenant_id="acme", source="test",
                                         causation=Causation("t", "c")))
    bus.publish([Message(topic, f"ds-{i}".encode(), event(i)) for i in range(30)]
                + [Message(topic, b"bad", b"\x00not an envelope")])
    applied: list[str] = []

    def apply(conn, env):  # type: ignore[no-untyped-def]
        assert codec.payload_name(env) == "dataset_registered", "an unwanted event reached the handler"
        applied.append(env.subject)

    wanted = lambda env: codec.payload_name(env) == "dataset_registered"  # noqa: E731
    consumer = EventConsumer(engine, bus, "passing-group", [topic], apply, wants=wanted,
                             batch_handler=(lambda conn, envs: [apply(conn, e) for e in envs]) if batched else None)
    try:
        seen = 0
        for _ in range(20):
            seen += len(consumer.poll_and_apply(max_records=7, timeout=0.2))
            if seen >= 31:
                break
        assert seen == 31
        assert sorted(applied) == sorted(f"ds-{i}" for i in range(0, 30, 3))
        assert consumer.stats.applied == 10 and consumer.stats.passed_by == 20 and consumer.stats.dead_lettered == 1
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(processed_events)).scalar() == 10
        consumer.close()
        again = EventConsumer(engine, bus, "passing-group", [topic], apply, wants=wanted)  # offsets were committed
        assert again.poll_and_apply(timeout=0.5) == []
        again.close()
    finally:
        bus.close()
