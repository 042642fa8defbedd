"""A consumer process for crash tests: applies each event to a counting table, slowly.

    python -m tests.integration.consume_worker BUS_URI STORE_URI GROUP TOPIC EXPECTED

Each applied event increments ``effects.applied`` for its id in the same transaction
as the dedupe record, so a double application would show as 2. Exits when EXPECTED
distinct events are applied, printing the consumer's stats as JSON.
"""

from __future__ import annotations

import json
import sys
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.common.bus import open_bus
from services.common.consumer import EventConsumer
from services.common.errors import CommitFailed
from services.common.store import open_store

effects_metadata = MetaData()
effects = Table("effects", effects_metadata, Column("event_id", String(64), primary_key=True),
                Column("applied", Integer, nullable=False))


def main(bus_uri: str, store_uri: str, group: str, topic: str, expected: int) -> None:
    engine = open_store(store_uri)
    effects_metadata.create_all(engine)
    bus = open_bus(bus_uri)

    def apply(conn, env) -> None:  # type: ignore[no-untyped-def]
        ins = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        conn.execute(ins(effects).values(event_id=env.id, applied=1).on_conflict_do_update(
            index_elements=["event_id"], set_={"applied": effects.c.applied + 1}))
        time.sleep(0.05)

    consumer = EventConsumer(engine, bus, group, [topic], apply)
    while True:
        try:
            consumer.poll_and_apply(max_records=20, timeout=0.5)
        except CommitFailed:  # a slow batch lost its partition: it is redelivered, dedupe skips it
            pass
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(effects)).scalar()
        if done >= expected:
            break
    consumer.close()
    print(json.dumps({"applied": consumer.stats.applied, "duplicates": consumer.stats.duplicates}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
