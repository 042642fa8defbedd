"""Topic retention on real Kafka: privtune topics keep events forever unless told otherwise.

A finite retention lets Kafka delete events a consumer group has not read yet; the group
then restarts at the log start and skips them without an error. So the bus creates its
topics with ``retention.ms=-1``, warns about existing topics that delete events, and a
test can still ask for a short retention and wait until the broker really deleted data.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from privtune.devinfra.kafka import KafkaCluster, log_start_offsets
from services.common.bus import Message, open_bus
from tests.platform_fixtures import wait_until

pytestmark = pytest.mark.integration


def topic_config(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)], request_timeout=10)
    (future,) = futures.values()
    return {name: entry.value for name, entry in future.result(timeout=15).items()}


def test_topics_are_created_to_keep_events_forever_unless_the_uri_says_otherwise(kafka_bootstrap: str) -> None:
    namespace = f"keep-{uuid.uuid4().hex[:8]}"
    open_bus(f"kafka://{kafka_bootstrap}?partitions=1&namespace={namespace}").ensure_topics(["events"])
    short = open_bus(f"kafka://{kafka_bootstrap}?partitions=1&namespace={namespace}"
                     "&retention_ms=3600000&segment_ms=60000")
    short.ensure_topics(["short"])

    kept = topic_config(kafka_bootstrap, f"{namespace}.events")
    assert kept["retention.ms"] == "-1"
    limited = topic_config(kafka_bootstrap, f"{namespace}.short")
    assert (limited["retention.ms"], limited["segment.ms"]) == ("3600000", "60000")


def test_an_existing_topic_that_deletes_events_is_named_in_a_warning(
        kafka_bootstrap: str, caplog: pytest.LogCaptureFixture) -> None:
    """A topic created elsewhere (by hand, an older release) with Kafka's default 7-day retention."""
    namespace = f"warn-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    week = f"{namespace}.privtune.dataset.events"
    admin.create_topics([NewTopic(week, num_partitions=1, replication_factor=1,
                                  config={"retention.ms": "604800000"})])[week].result(timeout=30)
    uri = f"kafka://{kafka_bootstrap}?partitions=1&namespace={namespace}"
    open_bus(uri).ensure_topics(["privtune.audit"])  # created by the bus: kept forever

    with caplog.at_level(logging.WARNING, logger="services.common.bus.kafka"):
        open_bus(uri).ensure_topics(["privtune.dataset.events", "privtune.audit"])

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert week in warnings[0] and "7 days (retention.ms=604800000)" in warnings[0]
    assert "skips them" in warnings[0] and "retention.ms=-1" in warnings[0]


def test_a_short_retention_really_deletes_old_records(kafka_cluster: KafkaCluster) -> None:
    """What a test of replay-after-retention relies on: with ``retention_ms=1000`` the broker
    deletes old segments within seconds (the devinfra broker checks retention every second),
    which moves the partition's log start offset (low watermark) above 0."""
    namespace = f"expire-{uuid.uuid4().hex[:8]}"
    bus = open_bus(f"kafka://{kafka_cluster.bootstrap_servers}?partitions=1&namespace={namespace}"
                   "&retention_ms=1000&segment_ms=500")
    bus.publish([Message("events", b"k", str(i).encode()) for i in range(20)])
    wire = f"{namespace}.events"  # the topic's name on the broker

    wait_until(lambda: log_start_offsets(kafka_cluster.bootstrap_servers, wire)[0] > 0, timeout=60,
               what="retention to delete the first segment")
    assert kafka_cluster.log_start_offsets(wire)[0] <= bus.end_offsets("events")[0] == 20
    bus.close()
