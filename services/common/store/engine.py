"""Open a store by URL, migrated to the latest schema; and the read-only side of a store.

Writers and readers get different connections:

- **writes** (``engine.begin()``): on SQLite every transaction starts with ``BEGIN IMMEDIATE``
  (the write lock at the start, so two writers never deadlock upgrading read locks); on
  PostgreSQL an ordinary transaction from a pool sized for the gRPC server.
- **reads** (``reader(engine).connect()``): on SQLite a separate pool of ``query_only``
  connections without a transaction of their own, so each statement reads the last committed
  state from the WAL and never waits for a writer; on PostgreSQL the same pool in autocommit,
  so a one-statement read is one round trip (no ``BEGIN``/``ROLLBACK`` around it).

A read of several statements is not one snapshot: read positions first, rows after, and the
rows are at least as fresh as the positions (see ``read_positions.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from services.common.store.migrate import upgrade_to_head

# connections kept per process for the writer and for the readers; bursts may open more. The
# gRPC server runs 32 unary threads plus the stream threads and the background loops.
POOL_SIZE = int(os.environ.get("PRIVTUNE_STORE_POOL_SIZE", "16"))
POOL_OVERFLOW = int(os.environ.get("PRIVTUNE_STORE_POOL_OVERFLOW", "48"))
_READER = "_privtune_reader"  # the attribute an engine keeps its reader in (it lives and dies with it)


def _sqlite_pragmas(dbapi_conn: object, _record: object) -> None:
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=60000")
    cur.close()


def _sqlite_read_pragmas(dbapi_conn: object, _record: object) -> None:
    dbapi_conn.isolation_level = None  # type: ignore[attr-defined]  # no implicit transactions: each read is fresh
    cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
    cur.execute("PRAGMA busy_timeout=60000")  # only while another connection checkpoints or recovers the WAL
    cur.execute("PRAGMA query_only=ON")       # a write through a reader is an error, never a lock
    cur.close()


def _is_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and bool(parsed.database) and parsed.database != ":memory:"


def create_store_engine(url: str) -> Engine:
    """An engine for ``url`` (``sqlite:///path.db`` or ``postgresql+psycopg://...``), not migrated."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _sqlite_pragmas)

        # pysqlite's own transaction handling defers BEGIN; take the write lock at
        # the start instead, so two writers never deadlock upgrading read locks.
        @event.listens_for(engine, "begin")
        def _begin_immediate(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine, "connect")
        def _no_pysqlite_tx(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)


def reader(engine: Engine) -> Engine:
    """The engine to read ``engine``'s store with (see the module doc); made once per engine.

    Use it for statements that write nothing; a write through it fails (``query_only`` on SQLite,
    and on PostgreSQL it would commit at once, outside any command's transaction: don't).
    """
    found = getattr(engine, _READER, None)
    if found is not None:
        return found
    url = engine.url.render_as_string(hide_password=False)
    if _is_sqlite_file(url):
        made = create_engine(url, connect_args={"timeout": 60}, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
        event.listen(made, "connect", _sqlite_read_pragmas)
    elif engine.dialect.name == "sqlite":
        made = engine  # an in-memory database has no second connection to read it through
    else:
        made = engine.execution_options(isolation_level="AUTOCOMMIT")
    setattr(engine, _READER, made)
    return made


def dispose(engine: Engine) -> None:
    """Close ``engine``'s pooled connections and its reader's."""
    found = getattr(engine, _READER, None)
    if found is not None and found is not engine and found.pool is not engine.pool:
        found.dispose()
    engine.dispose()


def open_store(url: str) -> Engine:
    """An engine for ``url`` with every migration applied."""
    engine = create_store_engine(url)
    upgrade_to_head(engine)
    return engine
