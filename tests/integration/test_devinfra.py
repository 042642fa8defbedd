"""The dev/test servers of privtune.devinfra work for real: Kafka 4.3 KRaft and PostgreSQL."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, PartitionMetadata

from privtune.devinfra import DevInfraError
from privtune.devinfra.kafka import KafkaCluster
from privtune.devinfra.postgres import ExternalPostgres, PostgresServer

pytestmark = pytest.mark.integration


def _topic(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _create_topic(bootstrap: str, name: str, partitions: int, rf: int) -> None:
    """Create with a plain AdminClient, then wait for leaders in the metadata."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)])
    futures[name].result(30)
    _partitions(bootstrap, name, partitions)


def _partitions(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[PartitionMetadata]:
    """Partition metadata of ``topic`` once every partition has a leader.

    Brokers learn about a new topic asynchronously, so an early answer may not
    know it yet.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    while True:
        meta = admin.list_topics(topic, timeout=10).topics.get(topic)
        parts = list(meta.partitions.values()) if meta is not None and meta.error is None else []
        if len(parts) == count and all(p.leader >= 0 for p in parts):
            return sorted(parts, key=lambda p: p.id)
        assert time.monotonic() < deadline, f"no leaders for {topic}: {meta}"
        time.sleep(0.05)


def _read_all(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[str]:
    """Every message of ``topic`` up to the current high watermarks (no consumer group)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        parts = [p.id for p in _partitions(bootstrap, topic, count)]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        values: list[str] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout
        while len(done) < len(parts):
            assert time.monotonic() < deadline, f"timed out reading {topic}: {len(values)} read"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            part, err = msg.partition(), msg.error()
            assert part is not None
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                done.add(part)
                continue
            values.append(_text(msg))
            if (msg.offset() or 0) + 1 >= ends[part]:
                done.add(part)
        return values
    finally:
        consumer.close()


def _text(msg: Message) -> str:
    value = msg.value()
    assert isinstance(value, bytes)
    return value.decode()


class _Acks:
    """Delivery callback collecting acknowledged values and errors."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.errors: list[KafkaError] = []

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.errors.append(err)
        else:
            self.acked.append(_text(msg))


# --------------------------------------------------------------------- single broker
def test_single_broker_produce_consume(kafka_cluster: KafkaCluster, kafka_bootstrap: str) -> None:
    assert kafka_bootstrap == kafka_cluster.bootstrap_servers
    topic = _topic("single")
    _create_topic(kafka_bootstrap, topic, partitions=3, rf=1)

    acks = _Acks()
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "acks": "all"})
    for i in range(100):
        producer.produce(topic, value=f"m{i}", key=str(i), on_delivery=acks)
    assert producer.flush(30) == 0
    assert acks.errors == [] and len(acks.acked) == 100

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": _topic("group"),
            "auto.offset.reset": "earliest",
        }
    )
    got: list[str] = []
    deadline = time.monotonic() + 60
    try:
        consumer.subscribe([topic])
        while len(got) < 100 and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                got.append(_text(msg))
    finally:
        consumer.close()
    assert sorted(got) == sorted(f"m{i}" for i in range(100))


def test_auto_topic_creation_is_disabled(kafka_cluster: KafkaCluster) -> None:
    producer = Producer(
        {
            "bootstrap.servers": kafka_cluster.bootstrap_servers,
            "message.timeout.ms": 1500,
        }
    )
    acks = _Acks()
    producer.produce(_topic("missing"), value="x", on_delivery=acks)
    producer.flush(10)
    assert acks.acked == [] and len(acks.errors) == 1


def test_startup_failure_reports_log_tail() -> None:
    with pytest.raises(DevInfraError) as info:
        KafkaCluster(1, extra_config={"num.io.threads": "lots"}, startup_timeout=60).start()
    assert "num.io.threads" in str(info.value)


@pytest.mark.slow
def test_node_failure_reports_first_errors() -> None:
    with KafkaCluster(1) as cluster:
        cluster.stop_node(0)
        port = int(cluster.node_bootstrap(0).rsplit(":", 1)[1])
        with socket.socket() as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            with pytest.raises(DevInfraError, match="Address already in use"):
                cluster.start_node(0)
        cluster.start_node(0)  # storage intact, port free again
        assert cluster.is_running(0)


# ------------------------------------------------------------------ three-node cluster
@pytest.fixture(scope="module")
def cluster3(kafka_cluster_factory: Callable[..., KafkaCluster]) -> KafkaCluster:
    return kafka_cluster_factory(3)


def _wait_full_isr(cluster: KafkaCluster, topic: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        parts = _partitions(cluster.bootstrap_servers, topic, count)
        if all(len(p.isrs) == 3 for p in parts):
            return
        assert time.monotonic() < deadline, [(p.id, p.isrs) for p in parts]
        time.sleep(0.2)


@pytest.mark.slow
def test_three_nodes_survive_sigkill_of_a_leader(cluster3: KafkaCluster) -> None:
    assert cluster3.replication_factor == 3 and cluster3.min_insync_replicas == 2
    bootstrap = cluster3.bootstrap_servers
    topic = _topic("ha")
    _create_topic(bootstrap, topic, partitions=3, rf=3)
    _wait_full_isr(cluster3, topic, 3)
    victim = _partitions(bootstrap, topic, 3)[0].leader

    acks = _Acks()
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
        }
    )
    for i in range(200):
        producer.produce(topic, value=f"v{i}", key=str(i), on_delivery=acks)
        producer.poll(0)
    cluster3.kill(victim)  # SIGKILL the leader of partition 0 while messages are in flight
    assert not cluster3.is_running(victim)
    for i in range(200, 400):
        producer.produce(topic, value=f"v{i}", key=str(i), on_delivery=acks)
        producer.poll(0)
    assert producer.flush(120) == 0
    assert acks.errors == []
    assert len(acks.acked) == 400

    got = _read_all(bootstrap, topic, 3)
    assert sorted(got) == sorted(acks.acked)  # every acknowledged message, exactly once

    cluster3.start_node(victim)
    assert cluster3.is_running(victim)
    _wait_full_isr(cluster3, topic, 3)
    assert sorted(_read_all(cluster3.node_bootstrap(victim), topic, 3)) == sorted(acks.acked)


@pytest.mark.slow
def test_three_nodes_clean_stop_and_restart(cluster3: KafkaCluster) -> None:
    topic = _topic("restart")
    cluster3.create_topic(topic, partitions=2)
    producer = Producer({"bootstrap.servers": cluster3.bootstrap_servers, "acks": "all"})
    cluster3.stop_node(2)
    assert not cluster3.is_running(2)
    for i in range(50):
        producer.produce(topic, value=f"r{i}")
    assert producer.flush(60) == 0
    cluster3.start_node(2)
    _wait_full_isr(cluster3, topic, 2)
    assert sorted(_read_all(cluster3.node_bootstrap(2), topic, 2)) == sorted(f"r{i}" for i in range(50))


# --------------------------------------------------------------------------- postgres
def test_postgres_roundtrip(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://")
    engine = sa.create_engine(postgres_url)
    table = f"t_{uuid.uuid4().hex[:8]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (id int PRIMARY KEY, name text NOT NULL)"))
            conn.execute(sa.text(f"INSERT INTO {table} VALUES (1, 'a'), (2, 'b')"))
        with engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT id, name FROM {table} ORDER BY id")).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b")]
    finally:
        engine.dispose()


def test_postgres_create_database(postgres_server: PostgresServer | ExternalPostgres, postgres_module_url: str) -> None:
    url = postgres_server.create_database(f"extra_{uuid.uuid4().hex[:8]}")
    for db_url in (url, postgres_module_url):
        engine = sa.create_engine(db_url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE t (x int)"))
                conn.execute(sa.text("INSERT INTO t VALUES (42)"))
                assert conn.execute(sa.text("SELECT current_database(), x FROM t")).one()[1] == 42
        finally:
            engine.dispose()
    postgres_server.drop_database(sa.engine.make_url(url).database or "")


def test_private_postgres_server_lifecycle() -> None:
    with PostgresServer() as pg:
        assert pg.url.endswith("/privtune") and pg.is_running()
        with sa.create_engine(pg.url).connect() as conn:
            assert conn.execute(sa.text("SHOW listen_addresses")).scalar() == "127.0.0.1"
            assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
        base = pg.base_dir
    assert not pg.is_running() and not base.exists()
