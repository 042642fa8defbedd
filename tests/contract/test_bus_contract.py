"""The bus contract: every backend (embedded SQLite log, Apache Kafka) passes the same tests."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from services.common.bus import EventBus, Message, Record, Subscription, open_bus
from services.common.errors import BusUnavailable, CommitFailed

pytestmark = pytest.mark.contract


@pytest.fixture(params=["sqlite", "kafka"])
def bus(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EventBus]:
    if request.param == "sqlite":
        b = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=3&session_timeout_ms=3000")
    else:
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        b = open_bus(f"kafka://{bootstrap}?partitions=3")
    yield b
    b.close()


@pytest.fixture
def topic() -> str:
    return f"contract.{uuid.uuid4().hex[:10]}"


def drain(sub: Subscription, expected: int, timeout: float = 60.0) -> list[Record]:
    """Poll until ``expected`` records arrived (or the deadline passed)."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        got.extend(sub.poll(max_records=500, timeout=0.5))
    return got


def settle(sub: Subscription, seconds: float = 2.0) -> list[Record]:
    """Whatever else arrives within ``seconds`` (expected: nothing)."""
    got: list[Record] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got.extend(sub.poll(timeout=0.25))
    return got


def publish_keyed(bus: EventBus, topic: str, n: int, keys: int = 7, start: int = 0) -> list[Message]:
    msgs = [Message(topic, f"key-{i % keys}".encode(), f"{i}".encode()) for i in range(start, start + n)]
    bus.publish(msgs)
    return msgs


def test_every_published_record_comes_back_in_order_per_key(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 300)
    sub = bus.subscribe("g1", [topic])
    got = drain(sub, 300)
    sub.close()
    assert sorted(int(r.value) for r in got) == list(range(300))
    per_key: dict[bytes, list[int]] = {}
    for r in got:
        per_key.setdefault(r.key, []).append(int(r.value))
    assert all(values == sorted(values) for values in per_key.values())
    # one key lives on one partition
    assert all(len({r.partition for r in got if r.key == k}) == 1 for k in per_key)


def test_each_partition_numbers_its_records_without_gaps_in_publish_order(bus: EventBus, topic: str) -> None:
    """Two batches, the first mixing two topics (their partitions share numbers), the second continuing each
    partition's numbering; within a partition, offsets follow the order the messages were given."""
    other = f"{topic}.other"
    mixed = [Message(topic if i % 3 else other, f"key-{i % 7}".encode(), f"{i}".encode()) for i in range(150)]
    bus.publish(mixed)
    publish_keyed(bus, topic, 70, start=150)
    sub = bus.subscribe("g1", [topic, other])
    got = drain(sub, 220)
    sub.close()
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for r in got:
        by_partition.setdefault((r.topic, r.partition), []).append((r.offset, int(r.value)))
    for records in by_partition.values():
        records.sort()
        assert [off for off, _ in records] == list(range(len(records)))
        assert [value for _, value in records] == sorted(value for _, value in records)
    assert sum(len(r) for r in by_partition.values()) == 220
    assert {t for t, _ in by_partition} == {topic, other}
    assert sorted(int(r.value) for r in got if r.topic == other) == [i for i in range(150) if i % 3 == 0]


def test_committed_group_resumes_after_its_offsets(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 50)
    sub = bus.subscribe("g1", [topic])
    first = drain(sub, 50)
    sub.commit(first)
    sub.close()
    publish_keyed(bus, topic, 20, start=50)
    sub = bus.subscribe("g1", [topic])
    second = drain(sub, 20)
    second += settle(sub)
    sub.close()
    assert sorted(int(r.value) for r in second) == list(range(50, 70))


def test_uncommitted_records_are_redelivered_to_the_next_member(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 40)
    sub = bus.subscribe("g1", [topic])
    assert len(drain(sub, 40)) == 40
    sub.close()  # no commit: a crash looks the same to the group
    sub = bus.subscribe("g1", [topic])
    again = drain(sub, 40)
    sub.close()
    assert sorted(int(r.value) for r in again) == list(range(40))


def test_partial_commit_redelivers_only_the_rest_of_each_partition(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 60, keys=1)  # one key: one partition, total order
    sub = bus.subscribe("g1", [topic])
    got = drain(sub, 60)
    sub.commit(got[:25])
    sub.close()
    sub = bus.subscribe("g1", [topic])
    rest = drain(sub, 35)
    rest += settle(sub, 1.0)
    sub.close()
    assert [int(r.value) for r in rest] == list(range(25, 60))


def test_groups_consume_independently(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 30)
    a, b = bus.subscribe("ga", [topic]), bus.subscribe("gb", [topic])
    got_a, got_b = drain(a, 30), drain(b, 30)
    a.commit(got_a)
    a.close()
    b.close()
    assert sorted(int(r.value) for r in got_a) == sorted(int(r.value) for r in got_b) == list(range(30))


def test_headers_and_binary_values_round_trip(bus: EventBus, topic: str) -> None:
    value = bytes(range(256)) * 4
    bus.publish([Message(topic, b"\x00k\xff", value, {"x-reason": b"\x00\x01bin", "x-empty": b""})])
    sub = bus.subscribe("g1", [topic])
    (record,) = drain(sub, 1)
    sub.close()
    assert record.key == b"\x00k\xff" and record.value == value
    assert record.headers == {"x-reason": b"\x00\x01bin", "x-empty": b""}
    assert record.topic == topic and record.offset >= 0 and record.timestamp_ms > 0


def test_end_offsets_count_what_was_written(bus: EventBus, topic: str) -> None:
    bus.ensure_topics([topic])
    assert sum(bus.end_offsets(topic).values()) == 0
    publish_keyed(bus, topic, 25)
    ends = bus.end_offsets(topic)
    assert len(ends) == 3 and sum(ends.values()) == 25


def identified(topic: str, n: int) -> list[Message]:
    """Messages as the outbox relay sends them: each with its event id."""
    return [Message(topic, f"key-{i % 5}".encode(), f"{i}".encode(), id=f"event-{i}") for i in range(n)]


def publish_with_retry(bus: EventBus, messages: list[Message], first_timeout: float) -> None:
    """What the relay does: publish, and after BusUnavailable publish the same messages again."""
    try:
        bus.publish(messages, timeout=first_timeout)
    except BusUnavailable:
        bus.publish(messages)


def test_a_retry_while_the_first_attempt_is_undecided_writes_each_message_once(bus: EventBus, topic: str) -> None:
    """``timeout=0`` gives up at once: Kafka's producer still holds the messages when the retry
    comes (the embedded log writes synchronously, so its first attempt succeeds)."""
    publish_with_retry(bus, identified(topic, 30), first_timeout=0)
    # The retry returned after every copy of these keys was acknowledged: the log is complete.
    assert sum(bus.end_offsets(topic).values()) == 30
    sub = bus.subscribe("g1", [topic])
    got = drain(sub, 30)
    sub.close()
    assert sorted(int(r.value) for r in got) == list(range(30))


def test_a_retry_after_the_first_attempt_was_written_late_writes_nothing_again(bus: EventBus, topic: str) -> None:
    """The broker acknowledges after the caller gave up: the retry finds the messages written."""
    messages = identified(topic, 20)
    try:
        bus.publish(messages, timeout=0)
    except BusUnavailable:
        deadline = time.monotonic() + 30
        while sum(bus.end_offsets(topic).values()) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        bus.publish(messages)
    assert sum(bus.end_offsets(topic).values()) == 20


def test_publishing_again_after_success_appends_again(bus: EventBus, topic: str) -> None:
    """An id is not a dedupe key on the log: only a copy the bus may still hold is not sent twice.
    (Consumers dedupe by event id, e.g. after a relay crashed between acknowledgement and marking.)"""
    messages = identified(topic, 5)
    bus.publish(messages)
    bus.publish(messages)
    assert sum(bus.end_offsets(topic).values()) == 10


def test_members_of_one_group_share_the_work_and_lose_nothing(bus: EventBus, topic: str) -> None:
    publish_keyed(bus, topic, 200, keys=20)
    seen: list[list[Record]] = [[], []]
    stop = threading.Event()

    def member(i: int) -> None:
        sub = bus.subscribe("shared", [topic])
        while not stop.is_set():
            records = sub.poll(timeout=0.3)
            seen[i].extend(records)
            try:
                sub.commit(records)
            except CommitFailed:  # a rebalance revoked a partition mid-batch: it is redelivered
                pass
        sub.close()

    threads = [threading.Thread(target=member, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len({int(r.value) for r in seen[0] + seen[1]}) < 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert {int(r.value) for r in seen[0] + seen[1]} == set(range(200))


def test_ensure_topics_is_idempotent(bus: EventBus, topic: str) -> None:
    bus.ensure_topics([topic])
    bus.ensure_topics([topic, topic])
    assert len(bus.end_offsets(topic)) == 3


def test_namespaces_keep_environments_apart(bus: EventBus, topic: str) -> None:
    sep = "&" if "?" in bus.uri else "?"
    staging, prod = open_bus(f"{bus.uri}{sep}namespace=staging"), open_bus(f"{bus.uri}{sep}namespace=prod")
    staging.publish([Message(topic, b"k", b"from-staging")])
    prod.publish([Message(topic, b"k", b"from-prod")])
    sub = staging.subscribe("g1", [topic])
    got = drain(sub, 1)
    got += settle(sub, 1.0)
    sub.commit(got)
    sub.close()
    assert [(r.topic, r.value) for r in got] == [(topic, b"from-staging")]
    assert sum(staging.end_offsets(topic).values()) == 1
    assert sum(bus.end_offsets(topic).values()) == 0  # the bare bus is a third, empty namespace
    with pytest.raises(ValueError, match="namespace"):
        open_bus(f"{bus.uri}{sep}namespace=bad/name")
    staging.close()
    prod.close()


def test_a_member_busy_with_a_long_record_keeps_its_place_with_keepalive(bus: EventBus, topic: str) -> None:
    """Past the session timeout without polling, keepalive() keeps the partitions and the commit valid."""
    publish_keyed(bus, topic, 10)
    busy = bus.subscribe("long-jobs", [topic])
    records = drain(busy, 10)
    assert len(records) == 10
    session_s = getattr(bus, "session_timeout_ms", 10_000) / 1000
    deadline = time.monotonic() + 1.5 * session_s
    while time.monotonic() < deadline:  # "training": no poll, only keepalives
        busy.keepalive()
        time.sleep(0.5)
    busy.commit(records)
    busy.close()
    fresh = bus.subscribe("long-jobs", [topic])
    assert settle(fresh) == []  # nothing redelivered: the work was not lost or done twice
    fresh.close()


def test_keepalive_stops_a_second_member_taking_a_busy_members_partitions(tmp_path: Path, topic: str) -> None:
    """Embedded bus: leases would expire after session_timeout_ms without keepalive."""
    bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=1&session_timeout_ms=1000")
    publish_keyed(bus, topic, 3)
    busy = bus.subscribe("g", [topic])
    assert len(drain(busy, 3)) == 3
    other = bus.subscribe("g", [topic])
    deadline = time.monotonic() + 3.0
    stolen: list[Record] = []
    while time.monotonic() < deadline:
        busy.keepalive()
        stolen.extend(other.poll(timeout=0.2))
    assert stolen == []
    busy.close()  # the busy member goes away without committing: now the other one gets the work
    assert len(drain(other, 3, timeout=10)) == 3
    other.close()
    bus.close()


def test_backlog_counts_what_a_member_has_not_fetched_yet(bus: EventBus, topic: str) -> None:
    """What EventConsumer reports as a read model's lag in events (issue 17)."""
    bus.ensure_topics([topic])
    bus.publish([Message(topic, b"one-key", f"{i}".encode()) for i in range(40)])  # one partition
    sub = bus.subscribe("backlog", [topic])
    try:
        got: list[Record] = []
        deadline = time.monotonic() + 60
        while not got and time.monotonic() < deadline:
            got = sub.poll(max_records=10, timeout=0.5)
        assert 0 < len(got) <= 10
        sub.commit(got)
        backlog = sub.backlog()
        assert backlog == 40 - len(got), f"{len(got)} fetched of 40, yet the backlog says {backlog}"
        got += drain(sub, 40 - len(got))
        sub.commit(got)
        assert len(got) == 40 and sub.backlog() == 0
    finally:
        sub.close()
