"""Rebuild read models from the event store (``stored_events``), and compare them with live ones.

The event store is the source of truth and of replay; the bus is only transport. A
Kafka topic may have lost old segments to retention, or a topic may have been recreated:
replay does not depend on either. Every recorded event is read in commit order (``seq``),
which keeps each aggregate's own order, the only order projections rely on.

- a consumer projection gets each event of its topics applied, in batches of one
  transaction each, with the event ids recorded under the projection's name, so the live
  consumer then skips what replay applied;
- an inline projection (a view its aggregate writes in the same transaction) is recomputed
  by its ``rebuild`` function.

Run with the platform's consumers stopped: replay truncates the read model and rebuilds
it up to the newest event recorded when it began; later events are applied by the live
consumers. ``source`` may be another store than ``target`` (``privtune replay --verify``
rebuilds into a scratch store and compares).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from sqlalchemy import Engine, delete, func, insert, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.clock import now_ms
from services.common.errors import MalformedEvent
from services.common.projection import Projection
from services.common.store.schema import processed_events, stored_events

BATCH = 500


@dataclass(frozen=True)
class ReplayResult:
    projection: str
    applied: int
    skipped: int          # recorded events this build cannot decode (left to the dead-letter process)


def replay(target: Engine, projections: Sequence[Projection], *, source: Engine | None = None,
           progress: bool = False) -> list[ReplayResult]:
    """Truncate each projection's tables in ``target`` and rebuild them from ``source``'s event store."""
    source = source or target
    with source.connect() as conn:
        last_seq = int(conn.execute(select(func.max(stored_events.c.seq))).scalar() or 0)
    results = []
    for projection in projections:
        with target.begin() as conn:
            for table in projection.tables:
                conn.execute(delete(table))
            conn.execute(delete(processed_events).where(processed_events.c.consumer == projection.name))
        if projection.rebuild is not None:
            if source is target:  # one connection: a second would wait for the first's write lock on SQLite
                with target.begin() as conn:
                    count = projection.rebuild(conn, conn)
            else:
                with source.connect() as read, target.begin() as write:
                    count = projection.rebuild(read, write)
            results.append(ReplayResult(projection.name, count, 0))
            continue
        results.append(_reapply(source, target, projection, last_seq, progress))
    return results


def _reapply(source: Engine, target: Engine, projection: Projection, last_seq: int,
             progress: bool) -> ReplayResult:
    assert projection.apply is not None, f"projection {projection.name} has neither apply nor rebuild"
    topics = set(projection.topics)
    applied = skipped = 0
    bar = _progress_bar(last_seq, projection.name) if progress else None
    try:
        for batch in _batches(source, last_seq):
            with target.begin() as conn:
                for env in batch:
                    if isinstance(env, MalformedEvent):
                        skipped += 1
                        continue
                    if codec.topic_of(env) not in topics:
                        continue
                    projection.apply(conn, env)
                    conn.execute(insert(processed_events).values(consumer=projection.name, event_id=env.id,
                                                                 processed_at_ms=now_ms()))
                    applied += 1
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
    return ReplayResult(projection.name, applied, skipped)


def _batches(source: Engine, last_seq: int) -> Iterator[list[events_pb2.EventEnvelope | MalformedEvent]]:
    """Every recorded event up to ``last_seq``, in commit order, a batch at a time."""
    after = 0
    while after < last_seq:
        with source.connect() as conn:
            rows = conn.execute(select(stored_events.c.seq, stored_events.c.payload)
                                .where(stored_events.c.seq > after, stored_events.c.seq <= last_seq)
                                .order_by(stored_events.c.seq).limit(BATCH)).all()
        if not rows:
            return
        batch: list[events_pb2.EventEnvelope | MalformedEvent] = []
        for row in rows:
            try:
                batch.append(codec.decode(row.payload))
            except MalformedEvent as exc:
                batch.append(exc)
        after = rows[-1].seq
        yield batch


def _progress_bar(total: int, name: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(total=total, desc=f"replay {name}", unit="ev")


def snapshot(engine: Engine, projections: Sequence[Projection]) -> dict[str, list[tuple]]:
    """Every row of every read-model table, in primary-key order (for comparisons)."""
    out: dict[str, list[tuple]] = {}
    with engine.connect() as conn:
        for projection in projections:
            for table in projection.tables:
                order = list(table.primary_key.columns) or list(table.columns)
                out[table.name] = [tuple(row) for row in conn.execute(select(table).order_by(*order))]
    return out
