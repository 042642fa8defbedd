"""Apache Kafka bus (confluent-kafka).

URI: ``kafka://host1:9092,host2:9092`` with optional query parameters
``partitions`` (default 6), ``replication`` (default 1; 3 in production),
``min_insync`` (default: 2 when replication >= 3, else 1) and
``delivery_timeout_ms`` (default 30000: how long publish waits for acks=all).

The producer is idempotent with ``acks=all``, so a retried send is never written
twice and an acknowledged event survives the loss of a broker. Consumers never
auto-commit: the application commits after it has applied a batch.
"""

from __future__ import annotations

import threading
import time
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from services.common.bus.protocol import EventBus, Message, Record, next_offsets
from services.common.bus.registry import register_backend
from services.common.errors import BusUnavailable, CommitFailed


class KafkaBus:
    """The distributed :class:`EventBus`."""

    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "kafka" or not parts.netloc:
            raise ValueError(f"Kafka bus URI must look like kafka://host:9092[,host2:9092], got {uri!r}")
        params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.uri = uri
        self.bootstrap = parts.netloc
        self.partitions = int(params.get("partitions", 6))
        self.replication = int(params.get("replication", 1))
        self.min_insync = int(params.get("min_insync", 2 if self.replication >= 3 else 1))
        self.delivery_timeout_ms = int(params.get("delivery_timeout_ms", 30000))
        self._producer: Producer | None = None
        self._lock = threading.Lock()
        self._known_topics: set[str] = set()

    # -- admin ------------------------------------------------------------------
    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def ensure_topics(self, topics: Sequence[str]) -> None:
        missing = [t for t in topics if t not in self._known_topics]
        if not missing:
            return
        admin = self._admin()
        try:
            existing = set(admin.list_topics(timeout=min(10.0, 1 + self.delivery_timeout_ms / 1000)).topics)
        except KafkaException as exc:
            raise BusUnavailable(f"Kafka at {self.bootstrap} did not answer a metadata request: {exc}") from exc
        new = [
            NewTopic(t, num_partitions=self.partitions, replication_factor=self.replication,
                     config={"min.insync.replicas": str(self.min_insync)})
            for t in missing if t not in existing
        ]
        if new:
            for topic, future in admin.create_topics(new, operation_timeout=30).items():
                try:
                    future.result(timeout=60)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise BusUnavailable(f"could not create topic {topic} on {self.bootstrap}: {exc}") from exc
            self._wait_for_leaders([t.topic for t in new])
        self._known_topics.update(missing)

    def _wait_for_leaders(self, topics: list[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        admin = self._admin()
        while time.monotonic() < deadline:
            meta = admin.list_topics(timeout=10).topics
            if all(t in meta and meta[t].partitions and all(p.leader >= 0 for p in meta[t].partitions.values())
                   for t in topics):
                return
            time.sleep(0.1)
        raise BusUnavailable(f"topics {topics} have no partition leaders after {timeout:.0f}s on {self.bootstrap}")

    # -- producing ----------------------------------------------------------------
    def _get_producer(self) -> Producer:
        with self._lock:
            if self._producer is None:
                self._producer = Producer({
                    "bootstrap.servers": self.bootstrap,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 2,
                    "delivery.timeout.ms": self.delivery_timeout_ms,
                    "request.timeout.ms": min(self.delivery_timeout_ms, 15000),
                })
            return self._producer

    def publish(self, messages: Sequence[Message], timeout: float = 30.0) -> None:
        if not messages:
            return
        self.ensure_topics(sorted({m.topic for m in messages}))
        producer = self._get_producer()
        pending = len(messages)
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            nonlocal pending
            pending -= 1
            if err is not None:
                errors.append(str(err))

        for m in messages:
            while True:
                try:
                    producer.produce(m.topic, key=m.key, value=m.value, headers=list(m.headers.items()),
                                     on_delivery=on_delivery)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    producer.poll(0.1)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        if pending or errors:
            detail = errors[0] if errors else f"{pending} of {len(messages)} not acknowledged within {timeout:.0f}s"
            raise BusUnavailable(f"Kafka at {self.bootstrap} did not acknowledge every event: {detail}")

    # -- consuming ----------------------------------------------------------------
    def subscribe(self, group: str, topics: Sequence[str], *, from_beginning: bool = True) -> "KafkaSubscription":
        self.ensure_topics(topics)
        return KafkaSubscription(self, group, list(topics), from_beginning)

    def end_offsets(self, topic: str) -> dict[int, int]:
        self.ensure_topics([topic])
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "privtune-watermarks",
                             "enable.auto.commit": False})
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            return {p: self._high_watermark(consumer, TopicPartition(topic, p)) for p in sorted(meta.partitions)}
        finally:
            consumer.close()

    @staticmethod
    def _high_watermark(consumer: Consumer, tp: TopicPartition, attempts: int = 20) -> int:
        """A just-created topic may not have a leader yet: retry those transient errors."""
        transient = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                     KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TRANSPORT, KafkaError._TIMED_OUT}
        for attempt in range(attempts):
            try:
                return int(consumer.get_watermark_offsets(tp, timeout=10)[1])
            except KafkaException as exc:
                if exc.args[0].code() not in transient or attempt == attempts - 1:
                    raise
                time.sleep(min(0.1 * 2 ** attempt, 2.0))
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(10)
            self._producer = None


class KafkaSubscription:
    """A consumer-group member backed by a confluent-kafka Consumer."""

    def __init__(self, bus: KafkaBus, group: str, topics: list[str], from_beginning: bool) -> None:
        self.group = group
        self._consumer = Consumer({
            "bootstrap.servers": bus.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest" if from_beginning else "latest",
            "isolation.level": "read_committed",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 1000,
            # a member may spend this long on one batch (a curation job runs inside one) before the
            # group gives its partitions away; liveness is still checked by the heartbeats above
            "max.poll.interval.ms": 3_600_000,
        })
        self._consumer.subscribe(topics)

    def poll(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        msgs = self._consumer.consume(num_messages=max_records, timeout=timeout)
        out: list[Record] = []
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or not err.retriable():
                    raise BusUnavailable(f"Kafka consumer for group {self.group!r} failed: {err}")
                continue
            out.append(Record(
                topic=m.topic(), partition=m.partition(), offset=m.offset(), key=m.key() or b"",
                value=m.value() or b"", headers={k: v or b"" for k, v in (m.headers() or [])},
                timestamp_ms=m.timestamp()[1],
            ))
        return out

    def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        upto = next_offsets(records)
        try:
            self._consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in upto.items()], asynchronous=False)
        except KafkaException as exc:
            raise CommitFailed(
                f"could not commit offsets for group {self.group!r} ({exc}); the records will be redelivered"
            ) from exc

    def keepalive(self) -> None:
        """Nothing to do: librdkafka heartbeats from a background thread. A member may
        still spend at most ``max.poll.interval.ms`` (1 h) between polls."""

    def close(self) -> None:
        self._consumer.close()


def _open(uri: str) -> EventBus:
    return KafkaBus(uri)


register_backend("kafka", _open)
