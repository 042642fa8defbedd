"""Idempotent creates: a client's ``request_id`` names the one aggregate its request created.

A create first looks the request id up (:func:`created_by_request`, a short read of its
own; a training-job create instead asks admission's one read, ``admission.admit(request_id=...)``,
and looks it up here only if admission refuses); a retry answers the original from there. A new
request claims the id in the
same transaction as its events (:func:`claim_request_id`); when two calls race with one
id, the second claim fails once the first commits, and the loser answers the winner's
aggregate after its own transaction has ended. No step opens a second connection
while a transaction is open on the calling thread: on SQLite every transaction holds
the database's write lock, so a nested one would wait for its own caller.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from services.common.store.schema import unique_names
from services.common.store.engine import reader


class RequestIdTaken(Exception):
    """Another call claimed the request id first; look up what it created (after this transaction)."""


def created_by_request(engine: Engine, tenant_id: str, kind: str, request_id: str) -> str | None:
    """The id of the aggregate the request ``request_id`` of ``kind`` created, or None."""
    with reader(engine).connect() as conn:
        row = conn.execute(select(unique_names.c.aggregate_id).where(
            unique_names.c.tenant_id == tenant_id, unique_names.c.kind == kind,
            unique_names.c.name == request_id)).first()
    return row.aggregate_id if row else None


def claim_request_id(conn: Connection, tenant_id: str, kind: str, request_id: str, aggregate_id: str) -> None:
    """Record in ``conn``'s transaction that ``request_id`` creates ``aggregate_id``.

    Raises:
        RequestIdTaken: a committed call holds the id already (on PostgreSQL, a concurrent
            one is waited for first).
    """
    try:
        with conn.begin_nested():
            conn.execute(insert(unique_names).values(claim_row(tenant_id, kind, request_id, aggregate_id)))
    except IntegrityError:
        raise RequestIdTaken(request_id) from None


def claim_row(tenant_id: str, kind: str, request_id: str, aggregate_id: str) -> dict[str, str]:
    """The ``unique_names`` row that claims ``request_id`` for ``aggregate_id`` (a duplicate key: it is taken)."""
    return dict(tenant_id=tenant_id, kind=kind, name=request_id, aggregate_id=aggregate_id)
