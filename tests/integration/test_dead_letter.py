"""Malformed messages go to the dead-letter topic with their reason; the consumer keeps going."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.common.bus import Message, open_bus
from services.common.consumer import EventConsumer
from services.common.store import open_store
from services.common.store.schema import dataset_view
from services.common.topics import DEAD_LETTER
from services.ingest import dataset_view as view
from tests.unit.test_envelope import _registered, malformed_samples

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_each_kind_of_malformed_message_is_dead_lettered(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    if backend == "sqlite":
        bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=1")
    else:
        bus = open_bus(f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=1")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    topic = f"dlq-test.{uuid.uuid4().hex[:8]}"
    samples = malformed_samples()
    good_before, good_after = _registered(), _registered()
    good_before.dataset_registered.dataset_id, good_after.dataset_registered.dataset_id = "ds-before", "ds-after"
    messages = [Message(topic, b"k", good_before.SerializeToString())]
    messages += [Message(topic, b"k", raw) for raw in samples.values()]
    messages += [Message(topic, b"k", good_after.SerializeToString())]
    dlq_start = sum(bus.end_offsets(DEAD_LETTER).values())
    bus.publish(messages)

    consumer = EventConsumer(engine, bus, f"dlq-group-{uuid.uuid4().hex[:6]}", [topic], view.apply)
    deadline = time.monotonic() + 60
    handled = 0
    while handled < len(messages) and time.monotonic() < deadline:
        handled += len(consumer.poll_and_apply(timeout=0.5))
    consumer.close()

    assert consumer.stats.applied == 2 and consumer.stats.dead_lettered == len(samples)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dataset_view)).scalar() == 2

    reader = bus.subscribe(f"dlq-reader-{uuid.uuid4().hex[:6]}", [DEAD_LETTER])
    dead = []
    deadline = time.monotonic() + 60
    while len(dead) < len(samples) and time.monotonic() < deadline:
        dead += [r for r in reader.poll(timeout=0.5) if r.headers.get("x-dlq-topic") == topic.encode()]
    reader.close()
    assert sum(bus.end_offsets(DEAD_LETTER).values()) - dlq_start >= len(samples)
    reasons = sorted(r.headers["x-dlq-reason"].decode() for r in dead)
    assert reasons == sorted(kind.split("/")[0] for kind in samples)
    assert sorted(r.value for r in dead) == sorted(samples.values())  # original bytes kept for a later fix-and-replay
    assert all(r.headers["x-dlq-detail"] and r.headers["x-dlq-offset"] for r in dead)
    bus.close()
