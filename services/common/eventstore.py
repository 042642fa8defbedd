"""Append an aggregate's events and its outbox rows in one transaction; load a stream.

The statements are built once, with their values as parameters: building a SQLAlchemy statement
(and its cache key) per call cost more CPU than the round trip on the API's hot paths.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import ColumnElement, Connection, Select, String, bindparam, func, select
from sqlalchemy.exc import IntegrityError

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.chunk_sizes import in_lists
from services.common.clock import now_ms
from services.common.errors import ConcurrencyConflict
from services.common.store.direct import DirectRead, insert_rows
from services.common.store.schema import outbox, stored_events

_E = stored_events.c
_STREAM_VERSION = DirectRead(select(func.max(_E.stream_version)).where(_E.stream_id == bindparam("stream_id")))
_LOAD_STREAM = DirectRead(
    select(_E.payload).where(_E.tenant_id == bindparam("tenant_id"), _E.stream_id == bindparam("stream_id"),
                             _E.stream_version > bindparam("after_version"))
    .order_by(_E.stream_version))


def tenant_position_of(tenant_id: ColumnElement[str]) -> Select:
    """The statement of ``tenant_position`` (column ``position``), for a tenant given as an expression."""
    return select(func.max(_E.seq).label("position")).where(_E.tenant_id == tenant_id)


_TENANT_POSITION = DirectRead(tenant_position_of(bindparam("tenant_id")))
_STREAM_POSITION = DirectRead(
    select(_E.seq).where(_E.stream_id == bindparam("stream_id"), _E.tenant_id == bindparam("tenant_id"))
    .order_by(_E.stream_version.desc()).limit(1))
_POSITIONS: dict[int, DirectRead] = {}
_MAX_IN = 64  # the longest IN list of one position read


def stream_version(conn: Connection, stream_id: str) -> int:
    """Number of events stored for this aggregate (0 when it does not exist)."""
    value = _STREAM_VERSION.scalar(conn, {"stream_id": stream_id})
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
    if events:
        _store(conn, stream_type, [(env, version) for version, env in enumerate(events, start=expected_version + 1)],
               f"{stream_type} {events[0].subject} changed while this command ran (expected version "
               f"{expected_version}); retry the request")


def append_new_streams(conn: Connection, stream_type: str, events: Sequence[events_pb2.EventEnvelope]) -> None:
    """Store each of ``events`` as the first event of its own new stream, in two statements for the lot:
    what many one-event appends with ``expected_version=0`` would do.

    Raises:
        ConcurrencyConflict: one of the streams exists already (nothing of the lot is stored).
    """
    append_to_new_streams(conn, stream_type, [[env] for env in events])


def append_to_new_streams(conn: Connection, stream_type: str,
                          streams: Sequence[Sequence[events_pb2.EventEnvelope]]) -> dict[str, int] | None:
    """Store each of ``streams`` as the first events of its own new stream (the subject of its events),
    in two statements for the lot: what one ``append(..., expected_version=0)`` per stream would do.
    Returns each stream's position (its newest event's ``seq``) where the store told them (SQLite:
    ``insert_rows(assigned=True)``), else None: read them (``stream_positions``).

    Raises:
        ConcurrencyConflict: one of the streams exists already (nothing of the lot is stored).
    """
    versioned = [(env, version) for events in streams for version, env in enumerate(events, start=1)]
    if not versioned:
        return {}
    return _store(conn, stream_type, versioned,
                  f"one of {len(streams)} new {stream_type} streams exists already; retry the request")


def stream_positions(conn: Connection, stream_ids: Sequence[str]) -> dict[str, int]:
    """The position of each stream's newest event, in few statements (``IN`` lists of padded sizes); a stream
    without events is missing from the result. Stream ids are unique across tenants (see ``stream_version``)."""
    found: dict[str, int] = {}
    for params in in_lists(list(stream_ids), _MAX_IN):
        found.update((stream_id, int(seq)) for stream_id, seq in _positions_of(len(params)).rows(conn, params))
    return found


def _positions_of(size: int) -> DirectRead:
    """``SELECT stream_id, max(seq) ... WHERE stream_id IN`` a list of ``size`` parameters, made once per size."""
    found = _POSITIONS.get(size)
    if found is None:
        found = _POSITIONS.setdefault(size, DirectRead(
            select(_E.stream_id, func.max(_E.seq)).where(_E.stream_id.in_(
                [bindparam(f"s{i}", type_=String(128)) for i in range(size)])).group_by(_E.stream_id)))
    return found


def _store(conn: Connection, stream_type: str, versioned: Sequence[tuple[events_pb2.EventEnvelope, int]],
           conflict: str) -> dict[str, int] | None:
    """Insert the events and their outbox rows; each stream's position where the store told the events' ``seq``
    (SQLite), else None."""
    now = now_ms()
    rows, queued = [], []
    for env, version in versioned:
        env.aggregate_version = version
        payload = codec.encode(env)
        rows.append(dict(
            event_id=env.id, tenant_id=env.tenant_id, stream_type=stream_type, stream_id=env.subject,
            stream_version=version, event_type=env.type, payload=payload, recorded_at_ms=now,
        ))
        queued.append(dict(
            event_id=env.id, topic=codec.topic_of(env), key=env.subject, payload=payload, created_at_ms=now,
            attempts=0,
        ))
    # multi-row statements on the driver's cursor: on SQLite a step (a GIL hand-back) per chunk, not per row;
    # on PostgreSQL one round trip per chunk, values dumped by the driver's C code
    try:
        seqs = insert_rows(conn, stored_events, rows, assigned=True)
    except IntegrityError as exc:
        raise ConcurrencyConflict(conflict) from exc
    insert_rows(conn, outbox, queued)
    return None if seqs is None else {row["stream_id"]: seq for row, seq in zip(rows, seqs)}  # the newest wins


def load_stream(
    conn: Connection, tenant_id: str, stream_id: str, after_version: int = 0
) -> list[events_pb2.EventEnvelope]:
    """The aggregate's events after ``after_version``, oldest first, for this tenant only."""
    rows = _LOAD_STREAM.rows(conn, {"tenant_id": tenant_id, "stream_id": stream_id, "after_version": after_version})
    return [codec.decode(payload) for (payload,) in rows]


def tenant_position(conn: Connection, tenant_id: str) -> int:
    """The tenant's newest event-store position (``stored_events.seq``; 0 before its first event).

    The sequence is shared by every tenant: never show it raw (see positions.py)."""
    value = _TENANT_POSITION.scalar(conn, {"tenant_id": tenant_id})
    return int(value or 0)


def stream_position(conn: Connection, tenant_id: str, stream_id: str) -> int:
    """The position of the aggregate's newest event (0 when it has none in this tenant); one row read
    through the (stream_id, stream_version) key however long the stream."""
    value = _STREAM_POSITION.scalar(conn, {"stream_id": stream_id, "tenant_id": tenant_id})
    return int(value or 0)
