"""Faults on real Kafka: a broker outage behind the outbox, and a broker lost from a 3-node cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import func, insert, select

from privtune.devinfra.kafka import KafkaCluster
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Message, open_bus
from services.common.consumer import EventConsumer
from services.common.envelope import Causation, new_envelope
from services.common.errors import BusUnavailable
from services.common.identity import Caller
from services.common.outbox import OutboxRelay
from services.common.store import open_store
from services.common.store.schema import dataset_view, outbox, processed_events, stored_events
from services.common.topics import DATASET_EVENTS
from services.ingest import dataset_view as view
from services.ingest.application import DatasetApplication, RegisterRequest
from tests.platform_fixtures import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def lone_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    """A broker of our own: this module stops and restarts it."""
    cluster = KafkaCluster(n_brokers=1, base_dir=tmp_path_factory.mktemp("kafka-outage"))
    cluster.start()
    yield cluster
    cluster.stop()


def test_outbox_holds_events_while_the_broker_is_down_and_delivers_them_once(
        lone_broker: KafkaCluster, tmp_path: Path) -> None:
    bus = open_bus(f"kafka://{lone_broker.bootstrap_servers}?partitions=2&delivery_timeout_ms=3000")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    storage = tmp_path / "tenants"
    app = DatasetApplication(engine, storage)
    caller = Caller("acme", "alice")

    def register(i: int) -> None:
        folder = storage / "acme" / f"set-{i}"
        folder.mkdir(parents=True)
        (folder / "a.txt").write_bytes(f"data {i}".encode())
        app.register(caller, RegisterRequest(name=f"set-{i}", storage_uri=f"file://{folder}", classification=2))

    stop = threading.Event()
    relay = OutboxRelay(engine, bus)
    consumer = EventConsumer(engine, bus, view.PROJECTION.name, view.PROJECTION.topics, view.apply)
    threads = [threading.Thread(target=relay.run, args=(stop,), kwargs={"max_backoff": 1.0}),
               threading.Thread(target=consumer.run, args=(stop,))]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            register(i)
        wait_until(lambda: relay.pending() == 0, what="first events published")

        lone_broker.stop_node(0)
        for i in range(10, 30):  # the service keeps accepting commands while Kafka is down
            register(i)
        time.sleep(4)  # longer than the delivery timeout: the relay has failed at least once
        assert relay.pending() > 0
        with engine.connect() as conn:
            from services.common.store.schema import outbox
            assert conn.execute(select(func.max(outbox.c.attempts))).scalar() >= 1

        lone_broker.start_node(0)
        wait_until(lambda: relay.pending() == 0, timeout=120, what="the outbox to drain after the broker returned")

        def rows() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(dataset_view)).scalar() or 0
        wait_until(lambda: rows() == 30, timeout=120, what="all 30 datasets in the read model")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        consumer.close()

    # Republishing everything (as a relay crash between ack and deletion would) changes nothing.
    with engine.begin() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0  # published rows are gone
        stored = conn.execute(select(stored_events.c.event_id, stored_events.c.stream_id, stored_events.c.payload)
                              .order_by(stored_events.c.seq)).all()
        conn.execute(insert(outbox), [dict(event_id=r.event_id, topic=codec.topic_of(codec.decode(r.payload)),
                                           key=r.stream_id, payload=r.payload, created_at_ms=0, attempts=0)
                                      for r in stored])
    assert relay.drain() == 30
    again = EventConsumer(engine, bus, view.PROJECTION.name, view.PROJECTION.topics, view.apply)
    deadline = time.monotonic() + 60
    while again.stats.duplicates < 30 and time.monotonic() < deadline:
        again.poll_and_apply(timeout=0.5)
    again.close()
    assert again.stats.duplicates == 30 and again.stats.applied == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(dataset_view)).scalar() == 30
        assert conn.execute(select(func.count()).select_from(processed_events)).scalar() == 30
    bus.close()


def test_events_pending_through_an_outage_reach_kafka_exactly_once(
        lone_broker: KafkaCluster, tmp_path: Path) -> None:
    """The relay gives up on each publish after 1 s; the producer keeps a message 3 s before it
    reports it timed out. While the broker is down the relay retries many times, so some retries
    come while the producer still holds the previous copies and some after they timed out. Once the
    broker is back, every event is on the topic exactly once."""
    namespace = f"once-{uuid.uuid4().hex[:8]}"
    bus = open_bus(f"kafka://{lone_broker.bootstrap_servers}?partitions=2&delivery_timeout_ms=3000"
                   f"&namespace={namespace}")
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    relay = OutboxRelay(engine, bus, publish_timeout=1.0)

    def commit(i: int) -> str:
        env = new_envelope(events_pb2.DatasetRegistered(dataset_id=f"ds-{i}", name=f"set-{i}"), subject=f"ds-{i}",
                           tenant_id="acme", source="test", causation=Causation("test", f"c-{i}"))
        with engine.begin() as conn:
            eventstore.append(conn, "dataset", [env], 0)
        return env.id

    def failed_attempts() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.max(outbox.c.attempts))).scalar() or 0)

    def drained() -> bool:
        try:
            relay.drain()
        except BusUnavailable:  # a new producer may take longer than 1 s to get its producer id
            return False
        return relay.pending() == 0

    committed = [commit(i) for i in range(5)]
    wait_until(drained, what="the first events published")  # topic and producer id exist before the outage
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), kwargs={"max_backoff": 0.5})
    thread.start()
    try:
        lone_broker.stop_node(0)
        try:
            committed += [commit(i) for i in range(5, 25)]
            # 6 attempts of ~1.5 s: retries both before and after the producer's 3 s delivery timeout
            wait_until(lambda: failed_attempts() >= 6, timeout=120, what="6 failed publish attempts")
        finally:
            lone_broker.start_node(0)
        wait_until(lambda: relay.pending() == 0, timeout=120, what="the outbox to drain after the broker returned")
    finally:
        stop.set()
        thread.join(timeout=30)

    assert Counter(event_ids_on_topic(bus, DATASET_EVENTS)) == Counter(committed)  # each exactly once
    bus.close()


def event_ids_on_topic(bus: EventBus, topic: str) -> list[str]:
    """The envelope id of every record on ``topic``, read from the beginning to the end offsets."""
    total = sum(bus.end_offsets(topic).values())
    sub = bus.subscribe(f"read-all-{uuid.uuid4().hex[:8]}", [topic])
    records = []
    deadline = time.monotonic() + 60
    while len(records) < total and time.monotonic() < deadline:
        records += sub.poll(timeout=0.5)
    sub.close()
    assert len(records) == total, f"read {len(records)} of the {total} records on {topic}"
    return [codec.decode(r.value).id for r in records]


def test_publish_to_a_dead_broker_raises_bus_unavailable(tmp_path: Path) -> None:
    bus = open_bus("kafka://127.0.0.1:1?delivery_timeout_ms=1000")
    with pytest.raises(BusUnavailable, match="127.0.0.1:1"):
        bus.publish([Message("privtune.test", b"k", b"v")], timeout=3)


def test_three_brokers_lose_no_acknowledged_event_when_one_dies(tmp_path: Path) -> None:
    cluster = KafkaCluster(n_brokers=3, base_dir=tmp_path / "kafka3")
    cluster.start()
    try:
        bus = open_bus(f"kafka://{cluster.bootstrap_servers}?partitions=3&replication=3&min_insync=2"
                       "&delivery_timeout_ms=20000")
        topic = f"replicated.{uuid.uuid4().hex[:8]}"
        bus.ensure_topics([topic])
        acked: list[int] = []
        failed = 0

        def kill_mid_stream() -> None:
            while len(acked) < 300:
                time.sleep(0.005)
            cluster.kill(1)  # SIGKILL a broker while the producer is publishing

        killer = threading.Thread(target=kill_mid_stream)
        killer.start()
        for batch in range(40):
            values = list(range(batch * 25, batch * 25 + 25))
            try:
                bus.publish([Message(topic, f"k{v % 9}".encode(), str(v).encode()) for v in values], timeout=30)
                acked += values
            except BusUnavailable:
                failed += 1
        killer.join()
        assert len(acked) >= 900, f"only {len(acked)} acknowledged ({failed} batches failed)"
        sub = bus.subscribe(f"verify-{uuid.uuid4().hex[:6]}", [topic])
        seen: set[int] = set()
        deadline = time.monotonic() + 120
        while not set(acked) <= seen and time.monotonic() < deadline:
            seen |= {int(r.value) for r in sub.poll(timeout=1.0)}
        sub.close()
        assert set(acked) <= seen, f"{len(set(acked) - seen)} acknowledged events lost"
        bus.close()
    finally:
        cluster.stop()
