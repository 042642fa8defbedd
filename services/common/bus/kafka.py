"""Apache Kafka bus (confluent-kafka).

URI: ``kafka://host1:9092,host2:9092`` with optional query parameters

* ``partitions`` (default 6), ``replication`` (default 1; 3 in production) and
  ``min_insync`` (default: 2 when replication >= 3, else 1) of the topics it creates;
* ``delivery_timeout_ms`` (default 30000): how long the producer keeps trying to
  deliver a message before it reports it failed (librdkafka's ``delivery.timeout.ms``);
* ``retention_ms`` (default -1, keep events forever): ``retention.ms`` of the topics it
  creates. Kafka's default is 7 days, after which a consumer group that was offline
  longer silently skips the deleted events (it restarts at the log start);
* ``segment_ms`` (default: the broker's, 7 days): ``segment.ms`` of the topics it
  creates, i.e. how soon a log segment is closed and may be deleted by retention.
  Only tests that want retention to act within seconds need it.

For topics that already exist, ``ensure_topics`` reads their configuration and logs
a WARNING for each one whose retention deletes events (finite ``retention.ms`` or
``retention.bytes``, or ``cleanup.policy=compact``); it does not change them.

The producer is idempotent with ``acks=all``, so its own retries never write a
message twice and an acknowledged event survives the loss of a broker. Messages
with an ``id`` are tracked until librdkafka reports their outcome, so a
``publish()`` retried after ``BusUnavailable`` never produces a second copy while
the producer still holds the first one (see kafka_producer.py for what remains).
Consumers never auto-commit: the application commits after it has applied a batch.
"""

from __future__ import annotations

import logging
import time
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from services.common.bus.kafka_producer import TrackedProducer
from services.common.bus.protocol import EventBus, Message, Record, next_offsets
from services.common.bus.registry import register_backend
from services.common.errors import BusUnavailable, CommitFailed

log = logging.getLogger(__name__)


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
        self.retention_ms = int(params.get("retention_ms", -1))
        self.segment_ms = int(params["segment_ms"]) if "segment_ms" in params else None
        self._producer = TrackedProducer({
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "delivery.timeout.ms": self.delivery_timeout_ms,
            "request.timeout.ms": min(self.delivery_timeout_ms, 15000),
        }, where=self.bootstrap)
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
                     config=self._topic_config())
            for t in missing if t not in existing
        ]
        self._warn_about_retention(admin, [t for t in missing if t in existing])
        if new:
            for topic, future in admin.create_topics(new, operation_timeout=30).items():
                try:
                    future.result(timeout=60)
                except KafkaException as exc:
                    if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise BusUnavailable(f"could not create topic {topic} on {self.bootstrap}: {exc}") from exc
            self._wait_for_leaders([t.topic for t in new])
        self._known_topics.update(missing)

    def _topic_config(self) -> dict[str, str]:
        config = {"min.insync.replicas": str(self.min_insync), "retention.ms": str(self.retention_ms)}
        if self.segment_ms is not None:
            config["segment.ms"] = str(self.segment_ms)
        return config

    def _warn_about_retention(self, admin: AdminClient, topics: list[str]) -> None:
        """Log a WARNING for each existing topic whose retention deletes events.

        Consumers start over at the log start when their committed offset is gone, so a
        group that was offline longer than the retention misses events without any error.
        The check is advisory: if the broker does not answer, say so and carry on.
        """
        if not topics:
            return
        futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=10)
        for resource, future in futures.items():
            try:
                entries = {name: entry.value for name, entry in future.result(timeout=15).items()}
            except Exception as exc:  # noqa: BLE001 - KafkaException or a timeout: only a check
                log.warning("could not read the retention of Kafka topic %s on %s: %s", resource.name,
                            self.bootstrap, exc)
                continue
            for problem, fix in retention_problems(entries):
                log.warning(
                    "Kafka topic %s %s: a consumer group that has not read events before they are deleted (one "
                    "offline that long) skips them without notice, restarting at the log start. To keep events "
                    "forever run: kafka-configs.sh --bootstrap-server %s --alter --entity-type topics "
                    "--entity-name %s --add-config %s",
                    resource.name, problem, self.bootstrap, resource.name, fix)

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
    def publish(self, messages: Sequence[Message], timeout: float = 30.0) -> None:
        """Produce and wait up to ``timeout`` for every acknowledgement.

        librdkafka decides each message within ``delivery_timeout_ms``; a shorter
        ``timeout`` makes this raise sooner while the producer keeps the messages, and a
        retry with the same ids waits for those copies instead of producing new ones.
        """
        if not messages:
            return
        self.ensure_topics(sorted({m.topic for m in messages}))
        self._producer.send(messages, timeout)

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
        self._producer.close(10)


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

    def backlog(self) -> int:
        """From the high watermarks the last fetches cached (no broker round trip); a partition whose
        end or position is not known yet counts 0."""
        total = 0
        assigned = self._consumer.assignment()
        for tp in self._consumer.position(assigned) if assigned else []:
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                total += max(0, high - tp.offset)
        return total

    def close(self) -> None:
        self._consumer.close()


def retention_problems(config: dict[str, str | None]) -> list[tuple[str, str]]:
    """What in a topic's configuration deletes events: (in words, the setting that stops it)."""
    problems = []
    retention_ms = int(config.get("retention.ms") or -1)
    if retention_ms >= 0:
        problems.append((f"deletes events older than {_duration(retention_ms)} (retention.ms={retention_ms})",
                         "retention.ms=-1"))
    retention_bytes = int(config.get("retention.bytes") or -1)
    if retention_bytes >= 0:
        problems.append((f"deletes the oldest events once a partition holds {retention_bytes} bytes "
                         f"(retention.bytes={retention_bytes})", "retention.bytes=-1"))
    if "compact" in (config.get("cleanup.policy") or ""):
        problems.append(("is compacted (cleanup.policy=compact), which deletes all but the latest event of each "
                         "aggregate", "cleanup.policy=delete"))
    return problems


def _duration(ms: int) -> str:
    for unit, size in (("days", 86_400_000), ("hours", 3_600_000), ("minutes", 60_000), ("seconds", 1000)):
        if ms >= size:
            return f"{ms / size:g} {unit if ms != size else unit[:-1]}"
    return f"{ms} ms"


def _open(uri: str) -> EventBus:
    return KafkaBus(uri)


register_backend("kafka", _open)
