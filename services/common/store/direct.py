"""Read statements run on the database driver's own cursor, for the API's hottest reads.

SQLAlchemy's execute path costs about 0.1 ms of CPU a statement above the driver's own work
(execution context, result metadata, ``Row`` objects, events): on PostgreSQL more than a
``GetTrainingJob``'s round trip. A ``DirectRead`` is a Core statement compiled once per dialect
and run with the driver's cursor on a connection SQLAlchemy checked out, so pooling, the
reader's settings (SQLite ``query_only``, PostgreSQL autocommit) and the writer's transaction are
SQLAlchemy's as before (on a writer's connection outside a transaction, one is begun first, as
SQLAlchemy's autobegin would: on SQLite that takes the write lock before the read); a driver error comes out as SQLAlchemy's ``DBAPIError`` (and a lost
connection is invalidated), as from ``Connection.execute``.

Only statements whose parameters and result columns need no type conversion on the dialect
qualify (integers, strings, floats, bytes); one that does is refused when first compiled.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping, NamedTuple, Sequence

from sqlalchemy import Connection, Dialect, Float, exc
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


class _Compiled(NamedTuple):
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order for a positional driver (SQLite), else None
    defaults: Mapping[str, Any]          # values the statement carries itself (literals of a filter)


class DirectRead:
    """A SELECT compiled once per dialect, run on the driver's cursor; rows come back as tuples."""

    def __init__(self, statement: Select) -> None:
        self.statement = statement
        self.columns = tuple(c.key for c in statement.selected_columns)
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            with self._lock:
                found = self._compiled.get(dialect.name) or self._compile(dialect)
        return found

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect)
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                raise TypeError(f"parameter {name!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
        for column in self.statement.selected_columns:
            if _converts(column.type, dialect):
                raise TypeError(f"column {column.key!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
        positional = tuple(compiled.positiontup) if compiled.positional else None
        defaults = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
        made = _Compiled(compiled.string, positional, defaults)
        self._compiled[dialect.name] = made
        return made

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[tuple]:
        """All rows of the statement with ``params`` (by the bindparams' names), on ``conn``'s connection."""
        compiled = self._for(conn.dialect)
        values: Any = {**compiled.defaults, **params}
        if compiled.positional is not None:
            values = tuple(values[name] for name in compiled.positional)
        if not conn.in_transaction() and not is_reader(conn.engine):
            conn.begin()  # what Connection.execute's autobegin does (BEGIN IMMEDIATE on SQLite)
        fairy = conn.connection  # checks the connection out of the pool if it was not yet
        cursor = fairy.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(compiled.sql, values)
            return cursor.fetchall()
        except conn.dialect.loaded_dbapi.Error as error:
            lost = conn.dialect.is_disconnect(error, fairy.dbapi_connection, cursor)
            if lost:
                conn.invalidate(error)
            raise exc.DBAPIError.instance(compiled.sql, values, error, conn.dialect.loaded_dbapi.Error,
                                          connection_invalidated=lost, dialect=conn.dialect) from error
        finally:
            cursor.close()

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None without rows)."""
        found = self.rows(conn, params)
        return found[0][0] if found else None
