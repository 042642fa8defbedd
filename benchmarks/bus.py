"""Bus throughput and publish-to-consume latency: embedded vs Kafka vs raw confluent-kafka.

    .venv/bin/python benchmarks/bus.py [--events 20000] [--batch 100] [--rounds 3]

Each backend gets the same payloads (encoded DatasetRegistered envelopes), the same
batching, in the same run. A consumer thread reads while the producer publishes;
latency is publish() call to receipt by the consumer. The raw loop uses a bare
confluent-kafka Producer/Consumer with the same durability settings (idempotent,
acks=all, flush per batch): it is the ceiling for the Kafka backend.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

from confluent_kafka import Consumer, Producer

from privtune.devinfra.kafka import KafkaCluster
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import Message, open_bus
from services.common.envelope import Causation, new_envelope


def payloads(n: int) -> list[bytes]:
    return [codec.encode(new_envelope(
        events_pb2.DatasetRegistered(dataset_id=f"ds-{i}", name=f"set-{i}", checksum_sha256="ab" * 32,
                                     storage_uri=f"file:///data/tenants/acme/set-{i}", file_count=3, total_bytes=1234),
        subject=f"ds-{i % 64}", tenant_id="acme", source="bench", causation=Causation("bench", "c")))
        for i in range(n)]


def measure(name: str, publish: Callable[[list[tuple[int, bytes]]], None],
            consume: Callable[[], list[bytes]], values: list[bytes], batch: int) -> dict[str, float]:
    """Publish ``values`` in batches while a thread consumes; return rate and latency percentiles."""
    sent: dict[int, float] = {}
    received: dict[int, float] = {}
    done = threading.Event()

    def reader() -> None:
        while len(received) < len(values) and not done.is_set():
            for key in consume():
                if key != b"warmup":
                    received.setdefault(int(key), time.perf_counter())

    thread = threading.Thread(target=reader)
    thread.start()
    start = time.perf_counter()
    for lo in range(0, len(values), batch):
        chunk = [(i, values[i]) for i in range(lo, min(lo + batch, len(values)))]
        now = time.perf_counter()
        for i, _ in chunk:
            sent[i] = now
        publish(chunk)
    thread.join(timeout=300)
    done.set()
    elapsed = max(received.values()) - start
    lat = sorted((received[i] - sent[i]) * 1000 for i in received)
    return {"events": len(received), "events_per_s": len(received) / elapsed,
            "p50_ms": statistics.median(lat), "p99_ms": lat[int(len(lat) * 0.99) - 1]}


def bench_bus(uri: str, values: list[bytes], batch: int) -> dict[str, float]:
    bus = open_bus(uri)
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    sub = bus.subscribe(f"bench-{uuid.uuid4().hex[:6]}", [topic])
    bus.publish([Message(topic, b"warmup", b"")])  # producer id, group join and metadata before the clock
    while not sub.poll(timeout=1):
        pass

    def publish(chunk: list[tuple[int, bytes]]) -> None:
        bus.publish([Message(topic, str(i).encode(), v) for i, v in chunk])

    def consume() -> list[bytes]:
        records = sub.poll(max_records=1000, timeout=0.2)
        sub.commit(records)
        return [r.key for r in records]

    try:
        return measure(uri.split(":")[0], publish, consume, values, batch)
    finally:
        sub.close()
        bus.close()


def bench_raw_kafka(bootstrap: str, values: list[bytes], batch: int) -> dict[str, float]:
    topic = f"bench-raw.{uuid.uuid4().hex[:8]}"
    open_bus(f"kafka://{bootstrap}").ensure_topics([topic])
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 2})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    producer.produce(topic, key=b"warmup", value=b"")
    producer.flush()
    while not [m for m in consumer.consume(timeout=1) if not m.error()]:
        pass

    def publish(chunk: list[tuple[int, bytes]]) -> None:
        for i, v in chunk:
            producer.produce(topic, key=str(i).encode(), value=v)
        producer.flush()

    def consume() -> list[bytes]:
        msgs = [m for m in consumer.consume(num_messages=1000, timeout=0.2) if not m.error()]
        if msgs:
            consumer.commit(asynchronous=False)
        return [m.key() for m in msgs]

    try:
        return measure("raw", publish, consume, values, batch)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    values = payloads(args.events)
    print(f"{args.events} events of ~{statistics.mean(map(len, values)):.0f} bytes, batches of {args.batch}")
    with tempfile.TemporaryDirectory() as tmp, KafkaCluster(n_brokers=1, base_dir=Path(tmp) / "kafka") as cluster:
        runs: dict[str, Callable[[], dict[str, float]]] = {
            "embedded (sqlite)": lambda: bench_bus(f"sqlite:///{tmp}/events-{uuid.uuid4().hex[:6]}.db?partitions=4",
                                                   values, args.batch),
            "kafka backend": lambda: bench_bus(f"kafka://{cluster.bootstrap_servers}?partitions=4", values, args.batch),
            "raw confluent-kafka": lambda: bench_raw_kafka(cluster.bootstrap_servers, values, args.batch),
        }
        bench_raw_kafka(cluster.bootstrap_servers, values[: len(values) // 4], args.batch)  # warm the broker's JIT
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        names = list(runs)
        for r in range(args.rounds):  # rotate the order so no backend always runs on a colder broker
            for name in names[r % len(names):] + names[: r % len(names)]:
                samples[name].append(runs[name]())
        results = {name: {k: statistics.median(s[k] for s in samples[name]) for k in samples[name][0]}
                   for name in names}
    print(f"median of {args.rounds} rounds")
    ceiling = results["raw confluent-kafka"]["events_per_s"]
    print(f"\n{'backend':<22}{'events/s':>12}{'vs raw':>9}{'p50 ms':>10}{'p99 ms':>10}")
    for name, r in results.items():
        print(f"{name:<22}{r['events_per_s']:>12.0f}{r['events_per_s'] / ceiling:>8.2f}x"
              f"{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}")


if __name__ == "__main__":
    main()
