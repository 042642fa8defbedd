"""Rebuild read models from offset 0 of the bus, and compare them with live ones.

Run with the platform's consumers stopped: replay truncates the read model and
rebuilds it up to the end of the log as it stood when replay began; events after
that point are applied by the live consumers, which skip those replay recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, delete, select

from services.common.bus import EventBus
from services.common.consumer import EventConsumer
from services.common.projection import Projection
from services.common.store.schema import processed_events


@dataclass(frozen=True)
class ReplayResult:
    projection: str
    applied: int
    dead_lettered: int


def replay(engine: Engine, bus: EventBus, projections: Sequence[Projection], *, progress: bool = False) -> list[ReplayResult]:
    """Truncate each projection's tables and re-apply every event on its topics."""
    results = []
    for projection in projections:
        with engine.begin() as conn:
            for table in projection.tables:
                conn.execute(delete(table))
            conn.execute(delete(processed_events).where(processed_events.c.consumer == projection.name))
        targets = {(t, p): end for t in projection.topics for p, end in bus.end_offsets(t).items()}
        consumer = EventConsumer(engine, bus, f"replay.{projection.name}.{uuid.uuid4().hex[:8]}",
                                 projection.topics, projection.apply,
                                 dedupe_key=projection.name)  # live consumers then skip what replay applied
        positions = {tp: 0 for tp in targets}
        total = sum(targets.values())
        bar = _progress_bar(total, projection.name) if progress else None
        try:
            while any(positions[tp] < end for tp, end in targets.items()):
                records = consumer.poll_and_apply(timeout=1.0)
                for r in records:
                    tp = (r.topic, r.partition)
                    if tp in positions:
                        positions[tp] = max(positions[tp], r.offset + 1)
                if bar is not None:
                    bar.update(len(records))
        finally:
            consumer.close()
            if bar is not None:
                bar.close()
        results.append(ReplayResult(projection.name, consumer.stats.applied, consumer.stats.dead_lettered))
    return results


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
