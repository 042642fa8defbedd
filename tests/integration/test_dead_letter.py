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


@pytest.mark.parametrize("backend", ["sqlite", "kafka"])
def test_an_event_the_handler_keeps_refusing_is_set_aside_and_the_partition_moves_on(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    """A poison event (here: the handler raises on it every time, as a value the store refuses would) must
    not block the events behind it forever: after a few tries it is dead-lettered with the exception's type
    only, never its text, and the run loop applies the rest. A store outage never counts against an event."""
    import threading

    from services.common.supervision import LoopStatus

    if backend == "sqlite":
        bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=1")
    else:
        bus = open_bus(f"kafka://{request.getfixturevalue('kafka_bootstrap')}?partitions=1")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    topic = f"poison-test.{uuid.uuid4().hex[:8]}"
    events = [_registered() for _ in range(3)]
    for i, env in enumerate(events):
        env.id = f"event-{i}-{uuid.uuid4().hex[:8]}"
        env.subject = env.dataset_registered.dataset_id = f"ds-{i}"
    poison = events[1].id
    secret = "PRIVATE-TEXT-THE-EXCEPTION-QUOTES"

    def handler(conn, env):  # type: ignore[no-untyped-def]
        if env.id == poison:
            raise ValueError(f"cannot apply {secret}")
        view.apply(conn, env)

    dlq_start = bus.end_offsets(DEAD_LETTER)
    bus.publish([Message(topic, b"k", env.SerializeToString()) for env in events])
    consumer = EventConsumer(engine, bus, f"poison-{uuid.uuid4().hex[:6]}", [topic], handler)
    stop = threading.Event()
    status = LoopStatus("poison consumer")
    from services.common import supervision

    thread = threading.Thread(target=lambda: supervision.run_loop(
        "poison consumer", lambda: bool(consumer.poll_and_apply(timeout=0.5)), stop, idle_seconds=0.0,
        on_error=consumer._rejoin, max_backoff=0.5, status=status))
    thread.start()
    deadline = time.monotonic() + 120
    while consumer.stats.applied < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(timeout=30)
    consumer.close()
    with engine.connect() as conn:
        assert sorted(r.dataset_id for r in conn.execute(select(dataset_view.c.dataset_id))) == ["ds-0", "ds-2"]
    assert status.total_failures == consumer.max_handler_failures - 1
    reader = bus.subscribe(f"poison-reader-{uuid.uuid4().hex[:6]}", [DEAD_LETTER])
    dead = []
    deadline = time.monotonic() + 60
    while not dead and time.monotonic() < deadline:
        dead += [r for r in reader.poll(timeout=0.5) if r.headers.get("x-dlq-topic") == topic.encode()]
    reader.close()
    assert len(dead) == 1 and dead[0].headers["x-dlq-reason"] == b"rejected_by_handler"
    assert secret.encode() not in dead[0].headers["x-dlq-detail"] and b"ValueError" in dead[0].headers["x-dlq-detail"]
    assert sum(bus.end_offsets(DEAD_LETTER).values()) > sum(dlq_start.values())
    bus.close()
