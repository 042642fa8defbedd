"""Open a store by URL, migrated to the latest schema; and the read-only side of a store.

Writers and readers get different connections:

- **writes** (``engine.begin()``): on SQLite every transaction starts with ``BEGIN IMMEDIATE``
  (the write lock at the start, so two writers never deadlock upgrading read locks), after taking
  the process's writer lock (``_WriterLock``): threads of one process queue on it and wake the
  moment the previous writer commits, instead of polling SQLite's lock in sleeps of up to 100 ms
  (its busy handler), which under load left the lock idle while writers slept. Writers serving
  API calls (``serves_calls``) go before the background loops' that wait beside them, unless one
  has waited ``_WriterLock.YIELD_S``; on
  PostgreSQL an ordinary transaction from a pool sized for the gRPC server.
- **reads** (``reader(engine).connect()``): on SQLite a separate pool of ``query_only``
  connections without a transaction of their own, so each statement reads the last committed
  state from the WAL and never waits for a writer; on PostgreSQL the same pool in autocommit,
  so a one-statement read is one round trip (no ``BEGIN``/``ROLLBACK`` around it).

A read of several statements is not one snapshot: read positions first, rows after, and the
rows are at least as fresh as the positions (``TrainingJobApplication.list``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from services.common.store.migrate import upgrade_to_head

# connections kept per process for the writer and for the readers; bursts may open more. The
# gRPC server runs 32 unary threads plus the stream threads and the background loops.
# (PostgreSQL's default max_connections is 100: mind N processes x (size + overflow)).
POOL_SIZE = int(os.environ.get("PRIVTUNE_STORE_POOL_SIZE", "10"))
POOL_OVERFLOW = int(os.environ.get("PRIVTUNE_STORE_POOL_OVERFLOW", "30"))
PING_AFTER_IDLE_S = 1.0  # a PostgreSQL connection idle this long is pinged before it is handed out
_READER = "_privtune_reader"  # the attribute an engine keeps its reader in (it lives and dies with it)
_IS_READER = "_privtune_is_reader"  # set on a reader engine (not on an in-memory SQLite engine, its own reader)
_WRITERS = "_privtune_writers"  # the attribute a SQLite engine keeps its _WriterLock in
_reader_lock = threading.Lock()


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


_serving = threading.local()


def serves_calls() -> None:
    """Mark the current thread as one that serves API calls (the gRPC server's workers, as they start): on
    SQLite its writes go before those of the background loops (``_WriterLock``)."""
    _serving.calls = True


@dataclass(eq=False)
class _Waiter:
    holder: int  # id() of its DBAPI connection
    serving: bool
    since: float
    wake: threading.Condition  # over the lock's own state lock: only the writer handed the lock is woken
    granted: bool = False


class _WriterLock:
    """One writing transaction at a time per SQLite engine in this process (see the module doc).

    Taken in the engine's ``begin`` event, before ``BEGIN IMMEDIATE``; given back when the dialect's
    commit or rollback returns (pool resets roll back too) or the connection is invalidated or
    closed, whichever comes first, in any thread. A writer that waits ``WAIT_S`` without it goes on
    without it and meets SQLite's own lock and busy timeout, exactly as before this lock existed.

    Given back, it is handed to a waiting writer, never left for whoever asks first (a writer that has
    just committed and begins again would otherwise always win it): to the writer that has waited
    longest if that is ``YIELD_S`` or more, whatever it does; else to the longest waiting writer that
    serves a call (threads marked by ``serves_calls``); else to the longest waiting background loop's
    writer (the outbox relay, the access recorder, a projection's consumer, the controller). So a call
    usually waits for the writer in front of it only, not for a queue of loops as well (under the API
    benchmark on SQLite the lock was held 86% of the time, more than half of that by the loops); the
    loops, waiting a little longer, write the same rows in fewer, larger transactions; and nobody waits
    much longer than ``YIELD_S`` plus the turns of those who waited longer.
    """

    WAIT_S = 60.0
    YIELD_S = 0.1

    def __init__(self) -> None:
        # re-entrant: the garbage collector may finalise a leaked connection (its pool reset rolls back, which
        # gives back) on a thread that is inside take() or give_back() at that moment
        self._state = threading.RLock()
        self._holder: int | None = None  # id() of the DBAPI connection that holds it
        self._waiters: list[_Waiter] = []  # in the order they came

    def waiting(self) -> tuple[int, int]:
        """How many writers wait for it: (serving calls, others)."""
        with self._state:
            serving = sum(w.serving for w in self._waiters)
            return serving, len(self._waiters) - serving

    def take(self, raw: object) -> None:
        with self._state:
            if self._holder is None:  # (then nobody waits: a give-back hands it to a waiter)
                self._holder = id(raw)
                return
            me = _Waiter(id(raw), getattr(_serving, "calls", False), time.monotonic(),
                         threading.Condition(self._state))
            self._waiters.append(me)
            deadline = me.since + self.WAIT_S
            try:
                while not me.granted:
                    if self._holder is None:  # given back with nobody to hand it to (a finaliser in this thread)
                        self._waiters.remove(me)
                        self._holder = me.holder
                        return
                    left = deadline - time.monotonic()
                    if left <= 0:  # goes on without it (SQLite's lock and busy timeout), as before this lock
                        self._waiters.remove(me)
                        return
                    me.wake.wait(left)
            except BaseException:  # interrupted while it waited: out of the line, or on to the next if handed it
                if me in self._waiters:
                    self._waiters.remove(me)
                elif me.granted:
                    self.give_back(raw)
                raise

    def give_back(self, raw: object) -> None:
        with self._state:
            if self._holder != id(raw):
                return
            self._holder = None
            if self._waiters:
                first = self._waiters[0]  # the longest waiting
                aged = time.monotonic() - first.since >= self.YIELD_S
                chosen = first if aged else next((w for w in self._waiters if w.serving), first)
                self._waiters.remove(chosen)
                chosen.granted = True
                self._holder = chosen.holder
                chosen.wake.notify()


def _serialize_writers(engine: Engine) -> None:
    writers = _WriterLock()
    setattr(engine, _WRITERS, writers)
    dialect = engine.dialect
    commit, rollback = dialect.do_commit, dialect.do_rollback

    def raw(conn: object) -> object:
        return getattr(conn, "dbapi_connection", conn)

    def do_commit(conn: object) -> None:
        try:
            commit(conn)  # type: ignore[arg-type]
        finally:
            writers.give_back(raw(conn))

    def do_rollback(conn: object) -> None:
        try:
            rollback(conn)  # type: ignore[arg-type]
        finally:
            writers.give_back(raw(conn))

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn):  # type: ignore[no-untyped-def]
        dbapi = conn.connection.dbapi_connection
        writers.take(dbapi)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.give_back(dbapi)
            raise

    @event.listens_for(engine, "invalidate")
    def _invalidated(dbapi_conn, _record, _exc):  # type: ignore[no-untyped-def]
        writers.give_back(dbapi_conn)

    @event.listens_for(engine, "close")
    def _closed(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        writers.give_back(dbapi_conn)


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
        _serialize_writers(engine)

        @event.listens_for(engine, "connect")
        def _no_pysqlite_tx(dbapi_conn, _rec):  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    engine = create_engine(url, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    _ping_after_idle(engine)
    return engine


def _ping_after_idle(engine: Engine) -> None:
    """Ping a pooled connection before handing it out only if it sat idle ``PING_AFTER_IDLE_S`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip per transaction, a quarter
    of a PostgreSQL Get's time under load. A connection that waited longer (a restarted server, a
    proxy's idle timeout) is pinged, and a failed ping replaces it and marks every connection of
    the pool as stale (``InvalidatePoolError``, as SQLAlchemy's own pre-ping does), before anyone
    uses one. A connection used within the last second is NOT checked: after a server restart
    under load, the statements of the few checkouts made before the first failure is seen fail
    (UNAVAILABLE to a caller, a retry to a loop), then the pool replaces every connection older
    than that failure.
    """
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["privtune_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.get("privtune_idle_since")  # absent on a new connection (info dies with it)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as error:  # noqa: BLE001 - any failed ping: fresh connections instead
            raise exc.InvalidatePoolError(f"idle connection failed its ping: {type(error).__name__}") from error


def reader(engine: Engine) -> Engine:
    """The engine to read ``engine``'s store with (see the module doc); made once per engine.

    Use it for statements that write nothing; a write through it fails (``query_only`` on SQLite,
    and on PostgreSQL it would commit at once, outside any command's transaction: don't).
    """
    found = getattr(engine, _READER, None)
    if found is not None:
        return found
    with _reader_lock:
        return getattr(engine, _READER, None) or _make_reader(engine)


def _make_reader(engine: Engine) -> Engine:
    url = engine.url.render_as_string(hide_password=False)
    if _is_sqlite_file(url):
        made = create_engine(url, connect_args={"timeout": 60}, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
        event.listen(made, "connect", _sqlite_read_pragmas)
    elif engine.dialect.name == "sqlite":
        made = engine  # an in-memory database has no second connection to read it through
    else:
        made = engine.execution_options(isolation_level="AUTOCOMMIT")
    if made is not engine:
        setattr(made, _IS_READER, True)
    setattr(engine, _READER, made)
    return made


def is_reader(engine: Engine) -> bool:
    """Whether ``engine`` is some engine's reader: its connections never hold a transaction."""
    return getattr(engine, _IS_READER, False)


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
