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
