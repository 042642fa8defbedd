"""The cost of tamper evidence: audit records/s appended with chaining and signing, against a plain
append of the same records without a chain, on the embedded bus and on Kafka, and verification speed.

    .venv/bin/python benchmarks/audit.py [--events 20000] [--rounds 3] [--no-kafka]

For each bus, the same envelopes (AccessAllowed, the bulk of a real trail, over 8 tenants) are
published first; then the audit consumer (``services.audit.service.PROJECTION``: projector, hash
chain, global positions, many events per transaction, redeliveries skipped by record id) drains
the topic, timed from its first poll until every record is in. The peer does the same consumer
work — decode, project, one row per record, many per transaction — but inserts each record
unchained and unindexed (no predecessor read, no hash, no compare-and-set, no unique record id). Then the sealer signs heads and seals segments
(file://), and ``verify_stored_log`` checks everything it sealed. Each process does one thing at a
time, so each figure is for one core (SQLite store).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, Text, func, insert, select

from privtune.v1 import events_pb2
from services.audit import keys, projector, service
from services.audit.sealer import RetentionPolicy, Sealer
from services.audit.signed_heads import key_id
from services.audit.store_verify import verify_stored_log
from services.audit.tables import audit_records
from services.audit.worm.registry import open_segment_store
from services.common import envelope as codec
from services.common.bus import EventBus, Message, open_bus
from services.common.consumer import EventConsumer
from services.common.envelope import Causation, new_envelope
from services.common.store import open_store
from services.common.topics import ACCESS_EVENTS

TENANTS = [f"tenant-{i}" for i in range(8)]
_plain = MetaData()
plain_records = Table("bench_plain_records", _plain, Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
                      Column("tenant_id", String(128)), Column("record_id", String(200)), Column("body", Text))


def envelopes(n: int) -> list[bytes]:
    return [codec.encode(new_envelope(events_pb2.AccessAllowed(
        principal=f"user-{i % 50}", method="/privtune.v1.TrainingService/GetTrainingJob", resource=f"job_id=job-{i}",
        issuer="https://idp.example", via="token", roles=["viewer"], outcome="OK", duration_ms=2),
        subject=f"access-{uuid.uuid4().hex}", tenant_id=TENANTS[i % len(TENANTS)], source="bench",
        causation=Causation(f"user-{i % 50}", f"c-{i}"))) for i in range(n)]


def publish(bus: EventBus, values: list[bytes]) -> None:
    for lo in range(0, len(values), 1000):
        bus.publish([Message(topic=ACCESS_EVENTS, key=b"k%d" % (i % 16), value=v)
                     for i, v in enumerate(values[lo:lo + 1000], start=lo)])


def plain_apply(conn, envs: list[events_pb2.EventEnvelope]) -> None:  # type: ignore[no-untyped-def]
    rows = [dict(tenant_id=e.tenant_id, record_id=e.record_id, body=json.dumps(e.__dict__, default=str))
            for env in envs for e in projector.entries(env)]
    conn.execute(insert(plain_records), rows)


def drain(engine: Engine, bus: EventBus, name: str, batch_handler, n: int) -> float:  # type: ignore[no-untyped-def]
    consumer = EventConsumer(engine, bus, f"{name}-{uuid.uuid4().hex[:6]}", [ACCESS_EVENTS], lambda c, e: None,
                             dedupe_key=name, batch_handler=batch_handler, self_deduping=True)
    table = audit_records if name == "chained" else plain_records
    start = 0.0

    def applied() -> int:  # distinct records (a rebalance may redeliver some events)
        with engine.connect() as conn:
            return conn.execute(select(func.count(func.distinct(table.c.record_id)))).scalar() or 0
    try:
        while applied() < n:
            records = consumer.poll_and_apply(max_records=1000, timeout=1.0)
            if records and not start:
                start = time.perf_counter()  # from the first batch in hand
        return n / (time.perf_counter() - start)
    finally:
        consumer.close()


def one_round(bus_uri: str, values: list[bytes], work: Path) -> dict[str, float]:
    bus = open_bus(bus_uri)
    bus.ensure_topics([ACCESS_EVENTS])
    publish(bus, values)
    out = {}
    for name, handler in (("plain", plain_apply), ("chained", service.apply_batch)):
        engine = open_store(f"sqlite:///{work}/{name}-{uuid.uuid4().hex[:6]}.db")
        _plain.create_all(engine)
        out[name] = drain(engine, bus, name, handler, len(values))
        if name == "chained":
            key = keys.load_or_create(work / f"key-{uuid.uuid4().hex[:6]}.pem")
            store = open_segment_store((work / f"segments-{uuid.uuid4().hex[:6]}").as_uri())
            sealer = Sealer(engine, store, key, RetentionPolicy(default_days=0), seal_records=1000)
            start = time.perf_counter()
            sealer.flush()
            out["sealed"] = len(values) / (time.perf_counter() - start)
            start = time.perf_counter()
            public = {key_id(key.public_key()): key.public_key()}
            checked = sum(verify_stored_log(store, t, public).report.checked_records for t in TENANTS)
            assert checked == len(values), f"verified {checked} of {len(values)}"
            out["verified"] = len(values) / (time.perf_counter() - start)
        engine.dispose()
    bus.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-kafka", action="store_true", help="the embedded bus only")
    args = parser.parse_args()
    values = envelopes(args.events)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        buses = {"embedded (SQLite bus)": lambda: f"sqlite:///{work}/bus-{uuid.uuid4().hex[:6]}.db"}
        cluster = None
        if not args.no_kafka:
            from privtune.devinfra.kafka import KafkaCluster

            cluster = KafkaCluster(n_brokers=1, base_dir=work / "kafka").__enter__()
            buses["Kafka (1 broker)"] = lambda: f"kafka://{cluster.bootstrap_servers}?partitions=4"
        try:
            print(f"{args.events} AccessAllowed events over {len(TENANTS)} tenants, {args.rounds} rounds, median; "
                  "SQLite store; one process")
            print(f"{'bus':<24}{'plain rec/s':>13}{'chained rec/s':>15}{'chained/plain':>15}"
                  f"{'seal+sign rec/s':>17}{'verify rec/s':>14}")
            for name, uri in buses.items():
                rounds = [one_round(uri(), values, work) for _ in range(args.rounds)]
                med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                print(f"{name:<24}{med['plain']:>13,.0f}{med['chained']:>15,.0f}{med['chained'] / med['plain']:>15.2f}"
                      f"{med['sealed']:>17,.0f}{med['verified']:>14,.0f}")
        finally:
            if cluster is not None:
                cluster.__exit__(None, None, None)


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
