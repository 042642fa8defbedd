"""Statements run on the database driver's own cursor: the API's hottest reads, and SQLite appends.

SQLAlchemy's execute path costs CPU above the driver's own work (execution context, result
metadata, ``Row`` objects, events): measured, 50 µs a statement above psycopg's 70 µs, 15 µs above
sqlite3's 5. A ``DirectRead`` is a Core statement compiled once per dialect and run with the
driver's cursor on a connection SQLAlchemy checked out, so pooling, the reader's settings (SQLite
``query_only``, PostgreSQL autocommit) and the writer's transaction are SQLAlchemy's as before (on
a writer's connection outside a transaction, one is begun first, as SQLAlchemy's autobegin would:
on SQLite that takes the write lock before the read). Errors are SQLAlchemy's own, from its own
handler as from ``Connection.execute``: a driver error comes out as ``DBAPIError``; a lost
connection is invalidated together with every pooled connection older than the failure; a
transaction that a failed statement left to be rolled back refuses the read.

Only statements whose parameters and result columns need no type conversion on the dialect
qualify (integers, strings, floats, bytes); one that does is refused when first compiled.
``insert_rows_sqlite`` (below) writes many rows in few statements, for the same reasons.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

from sqlalchemy import Connection, Dialect, Float
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeEngine

from services.common.store.engine import is_reader


def _converts(kind: TypeEngine, dialect: Dialect) -> bool:
    """Whether SQLAlchemy would convert a value of ``kind`` the driver returns."""
    if isinstance(kind, Float) and not kind.asdecimal:
        return False  # both drivers return a float (PostgreSQL's float processor is chosen by the column's oid)
    try:
        return kind.dialect_impl(dialect).result_processor(dialect, None) is not None
    except Exception:  # noqa: BLE001 - a processor that needs the driver's column type: it converts something
        return True


def _autobegin(conn: Connection) -> None:
    """What ``Connection.execute`` does before a statement: refuse to run in a transaction that a failed
    statement or commit left to be rolled back; then, on a writer's connection outside a transaction,
    begin one (``BEGIN IMMEDIATE`` on SQLite: the write lock before the statement)."""
    transaction, nested = conn._transaction, conn._nested_transaction
    if (transaction is not None and not transaction.is_active) or (nested is not None and not nested.is_active):
        conn._invalid_transaction()
    if transaction is None and not is_reader(conn.engine):
        conn.begin()


@contextlib.contextmanager
def _driver_cursor(conn: Connection, statement: str, params: Any) -> Iterator[Any]:
    """A cursor of ``conn``'s driver connection (checked out by SQLAlchemy), closed after the block.

    Errors go through SQLAlchemy's own handler (its private API: tests/contract/test_store_contract.py checks
    it on both stores): a driver error becomes its DBAPIError naming ``statement``; a lost connection is
    invalidated, and so is every pooled connection older than the failure; any other error comes out as it is.
    """
    fairy = conn.connection  # checks the connection out of the pool if it was not yet (SQLAlchemy's errors)
    cursor = None
    try:
        cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        yield cursor
    except BaseException as error:
        driver_error = isinstance(error, conn.dialect.loaded_dbapi.Error)
        conn._handle_dbapi_exception(error, statement if driver_error else None, params, cursor, None)
        raise  # not reached: the handler raises
    finally:
        if cursor is not None:
            with contextlib.suppress(Exception):  # a cursor of a lost connection may fail to close
                cursor.close()


def _key(dialect: Dialect) -> tuple[str, str, str]:
    return dialect.name, dialect.driver, dialect.paramstyle


class _Compiled(NamedTuple):
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order for a positional driver (SQLite), else None
    defaults: Mapping[str, Any]          # values the statement carries itself (literals of a filter)


class DirectRead:
    """A SELECT compiled once per dialect, run on the driver's cursor; rows come back as tuples."""

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self.columns = tuple(c.key for c in statement.selected_columns)
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(_key(dialect))
        if found is None:
            with self._lock:
                found = self._compiled.get(_key(dialect)) or self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.literal_execute or bind.callable is not None \
                    or bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {name!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
        for column in self.statement.selected_columns:
            if _converts(column.type, dialect):
                raise TypeError(f"column {column.key!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
        positional = tuple(compiled.positiontup) if compiled.positional else None
        defaults = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
        made = _Compiled(compiled.string, positional, defaults)
        self._compiled[_key(dialect)] = made
        return made

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[tuple]:
        """All rows of the statement with ``params`` (by the bindparams' names), on ``conn``'s connection."""
        compiled = self._for(conn.dialect)
        values: Any = {**compiled.defaults, **params}
        if compiled.positional is not None:
            values = tuple(values[name] for name in compiled.positional)
        _autobegin(conn)
        with _driver_cursor(conn, compiled.sql, values) as cursor:
            cursor.execute(compiled.sql, values)
            return cursor.fetchall()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None without rows)."""
        found = self.rows(conn, params)
        return found[0][0] if found else None


SQLITE_MAX_VARIABLES = 999  # the floor of SQLite builds' variable limit (3.32+ allow 32,766)


def insert_rows_sqlite(conn: Connection, table: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into SQLite ``table`` as multi-row ``INSERT ... VALUES``
    statements on the driver's cursor, in ``conn``'s transaction (begun first if there is none, as
    ``Connection.execute`` would).

    ``Connection.execute`` with a list of rows is the driver's ``executemany``: one step per row,
    and sqlite3 gives the GIL back at every step. A writer holds the store's write lock meanwhile,
    and under load it must win the GIL back from every other thread each time: a batch of access
    records held the lock for 28 ms (p50) that way. Rows go in chunks of power-of-two sizes (64,
    then the binary digits of the rest), so a table has a handful of statements for the driver's
    statement cache, not one per batch size. Errors come out as from ``Connection.execute``
    (``sqlalchemy.exc.IntegrityError`` for a duplicate).
    """
    if not rows:
        return
    _autobegin(conn)
    names = tuple(rows[0])
    with _driver_cursor(conn, _multi_insert(table, names, 1), None) as cursor:
        start = 0
        for size in _chunks(len(rows), len(names)):
            chunk = rows[start:start + size]
            start += size
            cursor.execute(_multi_insert(table, names, size), [row[name] for row in chunk for name in names])


def _chunks(count: int, width: int) -> list[int]:
    """Chunk sizes for ``count`` rows of ``width`` columns: the largest power of two within the variable
    limit (at most 64) while that many are left, then the binary digits of the rest (100 -> 64, 32, 4)."""
    biggest = 1
    while biggest * 2 <= min(64, SQLITE_MAX_VARIABLES // width):
        biggest *= 2
    sizes = [biggest] * (count // biggest)
    rest, size = count % biggest, biggest // 2
    while rest:
        if size <= rest:
            sizes.append(size)
            rest -= size
        size //= 2
    return sizes


@functools.lru_cache(maxsize=64)
def _multi_insert(table: str, names: tuple[str, ...], count: int) -> str:
    one = "(" + ", ".join("?" * len(names)) + ")"
    quoted = ", ".join(f'"{name}"' for name in names)  # names from the schema (e.g. "key"), never from callers
    return f'INSERT INTO "{table}" ({quoted}) VALUES ' + ", ".join([one] * count)
