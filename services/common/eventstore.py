"""Append an aggregate's events and its outbox rows in one transaction; load a stream."""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.clock import now_ms
from services.common.errors import ConcurrencyConflict
from services.common.store.schema import outbox, stored_events


def stream_version(conn: Connection, stream_id: str) -> int:
    """Number of events stored for this aggregate (0 when it does not exist)."""
    value = conn.execute(
        select(func.max(stored_events.c.stream_version)).where(stored_events.c.stream_id == stream_id)
    ).scalar()
    return int(value or 0)


def append(
    conn: Connection, stream_type: str, events: Sequence[events_pb2.EventEnvelope], expected_version: int
) -> None:
    """Store ``events`` after ``expected_version`` and queue them for publishing.

    Must run inside the caller's transaction, together with any other write of the
    same command: that is what makes the outbox transactional.

    Raises:
        ConcurrencyConflict: another writer appended to the stream first.
    """
    if not events:
        return
    now = now_ms()
    rows, queued = [], []
    for i, env in enumerate(events, start=expected_version + 1):
        env.aggregate_version = i
        payload = codec.encode(env)
        rows.append(dict(
            event_id=env.id, tenant_id=env.tenant_id, stream_type=stream_type, stream_id=env.subject,
            stream_version=i, event_type=env.type, payload=payload, recorded_at_ms=now,
        ))
        queued.append(dict(
            event_id=env.id, topic=codec.topic_of(env), key=env.subject, payload=payload, created_at_ms=now,
            attempts=0,
        ))
    try:
        conn.execute(insert(stored_events), rows)
    except IntegrityError as exc:
        raise ConcurrencyConflict(
            f"{stream_type} {events[0].subject} changed while this command ran (expected version "
            f"{expected_version}); retry the request"
        ) from exc
    conn.execute(insert(outbox), queued)


def load_stream(
    conn: Connection, tenant_id: str, stream_id: str, after_version: int = 0
) -> list[events_pb2.EventEnvelope]:
    """The aggregate's events after ``after_version``, oldest first, for this tenant only."""
    rows = conn.execute(
        select(stored_events.c.payload)
        .where(stored_events.c.tenant_id == tenant_id, stored_events.c.stream_id == stream_id,
               stored_events.c.stream_version > after_version)
        .order_by(stored_events.c.stream_version)
    ).all()
    return [codec.decode(row.payload) for row in rows]


def tenant_position(conn: Connection, tenant_id: str) -> int:
    """The tenant's newest event-store position (``stored_events.seq``; 0 before its first event).

    The sequence is shared by every tenant: never show it raw (see positions.py)."""
    value = conn.execute(select(func.max(stored_events.c.seq)).where(stored_events.c.tenant_id == tenant_id)).scalar()
    return int(value or 0)


def stream_position(conn: Connection, tenant_id: str, stream_id: str) -> int:
    """The position of the aggregate's newest event (0 when it has none in this tenant); one row read
    through the (stream_id, stream_version) key however long the stream."""
    value = conn.execute(select(stored_events.c.seq).where(
        stored_events.c.stream_id == stream_id, stored_events.c.tenant_id == tenant_id)
        .order_by(stored_events.c.stream_version.desc()).limit(1)).scalar()
    return int(value or 0)
