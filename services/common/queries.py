"""Read-side helpers every application service shares: keyset pages and event-stream watches."""

from __future__ import annotations

import threading
from typing import Callable, Iterator

from sqlalchemy import ColumnElement, Engine, Table, select

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.errors import InvalidArgument

MAX_PAGE = 500
DEFAULT_PAGE = 50
MAX_WATCH_POLL_S = 1.0  # longest pause between two reads of a quiet watched stream


def page(engine: Engine, table: Table, key: str, tenant_id: str, page_size: int, page_token: str,
         *where: ColumnElement[bool]) -> tuple[list[dict], str]:
    """One tenant-scoped page of ``table`` ordered by column ``key``; returns (rows, next_page_token)."""
    if page_size > MAX_PAGE:
        raise InvalidArgument(f"page_size {page_size} is above the maximum {MAX_PAGE}")
    size = page_size or DEFAULT_PAGE
    column = table.c[key]
    q = select(table).where(table.c.tenant_id == tenant_id, *where).order_by(column).limit(size + 1)
    if page_token:
        q = q.where(column > page_token)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(q)]
    return rows[:size], (rows[size - 1][key] if len(rows) > size else "")


def watch_stream(engine: Engine, tenant_id: str, stream_id: str, is_active: Callable[[], bool],
                 stop: threading.Event, poll_interval: float = 0.2,
                 final: Callable[[events_pb2.EventEnvelope], bool] = lambda _: False,
                 ) -> Iterator[events_pb2.EventEnvelope]:
    """An aggregate's events from the first, then new ones as stored, until ``final`` says so,
    the caller goes away or the server stops.

    A quiet stream is polled less and less often, from ``poll_interval`` up to
    ``MAX_WATCH_POLL_S``, so a hundred idle watchers cost the store little; the caller
    going away is noticed within that time too.
    """
    seen = 0
    wait = poll_interval
    while is_active() and not stop.is_set():
        with engine.connect() as conn:
            events = eventstore.load_stream(conn, tenant_id, stream_id, after_version=seen)
        for env in events:
            seen = env.aggregate_version
            yield env
            if final(env):
                return
        if events:
            wait = poll_interval
        else:
            stop.wait(wait)
            wait = min(max(wait, poll_interval) * 2, max(MAX_WATCH_POLL_S, poll_interval))
