"""Statements run on the database driver's own cursor: the API's hottest reads and writes, and appends.

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

Parameters are converted as SQLAlchemy would convert them (its bind processors); only statements
whose result columns need no conversion on the dialect qualify (integers, strings, floats, bytes),
and one that does is refused when first compiled.
``DirectWrite`` runs an UPDATE or DELETE the same way, and ``insert_rows`` (below) writes many rows in
few statements, for the same reasons.

**On SQLite a read's rows come back packed in one.** sqlite3 gives the GIL back around every step of a
statement, one step per row, and each time must win it back from every other busy thread: under the
API benchmark's load a 50-row ``ListTrainingJobs`` spent 16 ms (p50) in its handler that way, for about
1.5 ms of CPU. A ``DirectRead`` whose columns are integers, strings and floats therefore runs on
SQLite as ``SELECT json_group_array(json_array(<columns>)), <flag> FROM (<the statement> LIMIT -1
OFFSET 0)``: SQLite builds the rows' JSON (without the GIL) and the driver takes two steps whatever
the row count (the same list: 5 ms). The rows keep the statement's order: SQLite 3.40 runs the
subquery (which its OFFSET keeps from being merged into the outer query, so each column is also
evaluated once) as a co-routine with its own sort, and the outer query scans it in that order (no
join, no ORDER BY of its own, an aggregate that depends on order). SQLite documents an aggregate's
input order as arbitrary, so the contract test checks the order on the SQLite in use. JSON numbers
would round a float to 15 digits, so floats travel as ``printf('%!.20e')`` text, read back exactly.
A value JSON would not carry exactly sends the read round again row by row: a float column holding
anything but a REAL (the flag, from ``typeof``), a REAL anywhere else (a JSON number with a point or
an exponent, which the decoder refuses; an infinite one, which SQLite writes as ``Inf``). So does a
read SQLite cannot pack (a result over its length limit, a BLOB in a text column), and each such
statement is logged once. Statements with another column type (bytes among them: hex in JSON cost a
Get more than the row steps it saved), whose columns cannot be a subquery's, or with floats where
this process's SQLite does not give them back exactly (tried once, ``_sqlite_packs``) are read row
by row. A contract test checks every value and the order against ``Connection.execute`` on both stores.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import threading
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence

from sqlalchemy import (BigInteger, Connection, Dialect, Enum, Float, Integer, LargeBinary, SmallInteger,
                        String, Table, TypeDecorator, and_, case, func, insert, literal_column, null, or_, select)
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql import Executable, Select
from sqlalchemy.types import TypeEngine

from services.common.chunk_sizes import chunk_sizes
from services.common.store.engine import is_reader

log = logging.getLogger(__name__)


def _converts(kind: TypeEngine, dialect: Dialect) -> bool:
    """Whether SQLAlchemy would convert a value of ``kind`` the driver returns."""
    if isinstance(kind, Float) and not kind.asdecimal:
        return False  # both drivers return a float (PostgreSQL's float processor is chosen by the column's oid)
    try:
        return kind.dialect_impl(dialect).result_processor(dialect, None) is not None
    except Exception:  # noqa: BLE001 - a processor that needs the driver's column type: it converts something
        return True


COLLECTING = "privtune_one_statement"  # conn.info key of a one_statement block's queue (store/one_statement.py)


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


def _bind_processor(kind: TypeEngine, dialect: Dialect) -> Callable[[Any], Any] | None:
    """SQLAlchemy's conversion of a parameter of type ``kind`` on the way in (e.g. SQLite's ``float()`` of a
    Float's value, pickling), applied as SQLAlchemy would; none for bytes, which both drivers take as they
    are (SQLAlchemy would only wrap them in the driver's Binary)."""
    if isinstance(kind, LargeBinary):
        return None
    return kind.dialect_impl(dialect).bind_processor(dialect)


def _key(dialect: Dialect) -> tuple[str, str, str]:
    return dialect.name, dialect.driver, dialect.paramstyle


class _Compiled(NamedTuple):
    sql: str
    positional: tuple[str, ...] | None  # parameter names in order for a positional driver (SQLite), else None
    defaults: Mapping[str, Any]          # values the statement carries itself (literals of a filter)
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]  # SQLAlchemy's conversions of parameters, by name
    packed: _Cells | None = None  # SQLite, rows packed in one JSON text: the columns that travel as text


_Cells = tuple[tuple[int, Callable[[str], Any]], ...]  # (column index, what makes its value from its JSON text)
_INTEGERS = (Integer, BigInteger, SmallInteger)
_MAX_COLUMNS = 100  # json_array takes at most SQLITE_MAX_FUNCTION_ARG (127 by default) arguments


def _storage_class(kind: TypeEngine) -> str | None:
    """What SQLite's ``typeof()`` says of a (non-NULL) value the driver gives as a column of ``kind`` needs
    no conversion for; None for a kind that is not packed."""
    if isinstance(kind, Float) and not kind.asdecimal:
        return "real"
    if type(kind) in _INTEGERS:
        return "integer"
    if isinstance(kind, String) and not isinstance(kind, Enum):
        return "text"
    return None


@functools.cache
def _sqlite_packs() -> tuple[bool, bool]:
    """(whether this process's SQLite has the JSON functions, whether its ``printf('%!.20e')`` gives every
    float back exactly): SQLite before 3.43 makes the digits in ``long double``, which is only ``double`` on
    some platforms. Tried once, on hard values, in memory."""
    import math
    import random
    import sqlite3

    hard = [0.1 + 0.2, 1 / 3, 0.1, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
            1.7976931348623157e308, 9007199254740993.0, 1e23, 123456789.00000001, math.pi * 1e200, -1.5e-300,
            math.nextafter(1.0, 2.0), math.nextafter(1e-5, 0.0)]
    rng = random.Random(0)
    hard += [rng.random() * 10.0 ** rng.randint(-300, 300) for _ in range(200)]
    try:
        db = sqlite3.connect(":memory:")
        try:
            db.execute("SELECT json_group_array(json_array(1, 'a'))").fetchone()
            db.execute("CREATE TABLE hard (n INTEGER PRIMARY KEY, x REAL)")
            db.executemany("INSERT INTO hard (n, x) VALUES (?, ?)", enumerate(hard))
            texts = db.execute("SELECT json_group_array(json_array(printf('%!.20e', x))) "
                               "FROM (SELECT x FROM hard ORDER BY n)").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return False, False
    return True, [float(t) for (t,) in json.loads(texts)] == hard


def _packable(statement: Executable) -> tuple[str, ...] | None:
    """Each column's storage class if ``statement``'s rows can be read packed on SQLite, else None."""
    json_functions, exact_floats = _sqlite_packs()
    if not isinstance(statement, Select) or not json_functions:
        return None
    kinds = tuple(_storage_class(column.type) for column in statement.selected_columns)
    if None in kinds or ("real" in kinds and not exact_floats) or len(kinds) > _MAX_COLUMNS:
        return None  # row by row
    return kinds  # type: ignore[return-value]


def _packed_statement(statement: Select, kinds: tuple[str, ...]) -> tuple[Select, _Cells]:
    """``statement``'s rows as one row: a JSON array of arrays (floats as text), and a flag set when a float
    column held anything but a REAL (a text would print as 0.0, an integer come back a float). A REAL met in
    another column is a JSON number with a point or an exponent (floats proper travel as strings), which
    ``_unpack`` refuses. Either way the read is made again row by row, so every value is what the driver
    gives. Constants are literal SQL, not parameters: a caller's own parameter names stay free."""
    if statement._limit_clause is None and statement._offset_clause is None:
        statement = statement.offset(literal_column("0"))  # never merged into the query around it
    rows = statement.subquery("packed_rows")
    cells: list[Any] = []
    made: list[tuple[int, Callable[[str], Any]]] = []
    checks: list[Any] = []
    for i, (column, kind) in enumerate(zip(rows.c, kinds)):
        if kind == "real":
            cells.append(case((column.is_(None), null()), else_=func.printf(literal_column("'%!.20e'"), column)))
            made.append((i, float))
            checks.append(and_(column.is_not(None), func.typeof(column) != literal_column("'real'")))
        else:
            cells.append(column)
    odd = func.max(case((or_(*checks), literal_column("1")), else_=literal_column("0"))) if checks \
        else literal_column("0")
    return select(func.json_group_array(func.json_array(*cells)), odd), tuple(made)


class _NotExact(ValueError):
    """A packed read met a value its JSON does not carry exactly."""


def _refuse_number(text: str) -> float:
    raise _NotExact(text)


def _unpack(found: tuple[str | None, int | None], cells: _Cells) -> list[tuple] | None:
    """The rows of a packed read; None if one of its values is not carried exactly: a float column that held
    something else (the flag), a JSON number with a point or an exponent (a REAL in an integer or text column:
    15 digits of it), or a word JSON has not (SQLite writes an infinite REAL as ``Inf``)."""
    text, odd = found
    if odd:
        return None
    try:
        rows = json.loads(text, parse_float=_refuse_number) if text else []
    except ValueError:
        return None
    if cells:
        for row in rows:
            for i, make in cells:
                if row[i] is not None:
                    row[i] = make(row[i])
    return [tuple(row) for row in rows]


# SQLite could not make the packed text: longer than SQLITE_LIMIT_LENGTH (1e9 bytes by default), a BLOB in a
# text column, a text that is not UTF-8 (whose message would quote the whole packed result): row by row then
_UNPACKABLE = ("too big", "JSON cannot hold BLOB", "Could not decode")


def _unpackable(error: BaseException) -> bool:
    message = str(getattr(error, "orig", error))
    return any(words in message for words in _UNPACKABLE)


class DirectRead:
    """A SELECT compiled once per dialect, run on the driver's cursor; rows come back as tuples."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self.columns = tuple(c.key for c in statement.selected_columns) if isinstance(statement, Select) else ()
        self._compiled: dict[tuple[str, str, str], _Compiled] = {}
        self._plain: dict[tuple[str, str, str], _Compiled] = {}  # SQLite: row by row, where packing fell short
        self._lock = threading.Lock()

    def _for(self, dialect: Dialect, pack: bool = True) -> _Compiled:
        """The statement compiled for ``dialect`` (on SQLite packed where it can be; ``pack=False``: row by
        row), compiled once."""
        cache = self._compiled if pack else self._plain
        found = cache.get(_key(dialect))
        if found is None:
            with self._lock:
                found = cache.get(_key(dialect))
                if found is None:
                    found = cache[_key(dialect)] = self._compile(dialect, pack)
        return found

    def _compile(self, dialect: Dialect, pack: bool = True) -> _Compiled:
        kinds = _packable(self.statement) if pack and dialect.name == "sqlite" else None
        statement, cells, compiled = self.statement, None, None
        if kinds is not None:
            try:  # a statement whose columns cannot be a subquery's (two labelled alike): row by row
                statement, cells = _packed_statement(self.statement, kinds)  # type: ignore[arg-type]
                compiled = statement.compile(dialect=dialect)
            except SQLAlchemyError:
                statement, cells, compiled = self.statement, None, None
        compiled = compiled or statement.compile(dialect=dialect)
        processors = []
        for name, bind in compiled.binds.items():
            if bind.expanding or bind.literal_execute or bind.callable is not None:
                raise TypeError(f"parameter {name!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
            process = _bind_processor(bind.type, dialect)
            if process is not None:
                processors.append((name, process))
        for column in self.statement.selected_columns if isinstance(self.statement, Select) else ():
            if _converts(column.type, dialect):
                raise TypeError(f"column {column.key!r} needs SQLAlchemy's processing on {dialect.name}: "
                                "run this statement with Connection.execute")
        positional = tuple(compiled.positiontup) if compiled.positional else None
        defaults = {name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required}
        return _Compiled(compiled.string, positional, defaults, tuple(processors), cells)

    def _values(self, compiled: _Compiled, params: Mapping[str, Any]) -> Any:
        values: Any = {**compiled.defaults, **params}
        for name, process in compiled.processors:
            if name in values:
                values[name] = process(values[name])
        if compiled.positional is not None:
            values = tuple(values[name] for name in compiled.positional)
        return values

    def _execute(self, conn: Connection, params: Mapping[str, Any], result: Callable[[Any], Any],
                 compiled: _Compiled | None = None) -> Any:
        """Run the statement with ``params`` (by the bindparams' names) on ``conn``'s connection; ``result``
        of the cursor."""
        if conn.dialect.driver == "psycopg" and COLLECTING in conn.info:
            raise RuntimeError("a one_statement block holds only insert_rows: this statement's answer would come "
                               "before the rows queued ahead of it are written")
        compiled = compiled or self._for(conn.dialect)
        values = self._values(compiled, params)
        _autobegin(conn)
        with _driver_cursor(conn, compiled.sql, values) as cursor:
            cursor.execute(compiled.sql, values)
            return result(cursor)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> Sequence[tuple]:
        """All rows of the statement with ``params`` (by the bindparams' names), on ``conn``'s connection."""
        compiled = self._for(conn.dialect)
        cells = compiled.packed
        if cells is None:
            return self._execute(conn, params, lambda cursor: cursor.fetchall(), compiled)
        try:
            found = _unpack(self._execute(conn, params, lambda cursor: cursor.fetchone(), compiled), cells)
            if found is not None:
                return found
            why = "a value its JSON would not carry exactly"
        except DBAPIError as error:
            if not _unpackable(error):
                raise
            why = str(error.orig).split("\n", 1)[0][:80]
        # read row by row, exactly as the driver gives it (the packed read only read: nothing to undo)
        if _key(conn.dialect) not in self._plain:
            log.info("a packed read (%s) is read row by row (%s)", compiled.sql[:120].replace("\n", " "), why)
        return self._execute(conn, params, lambda cursor: cursor.fetchall(), self._for(conn.dialect, pack=False))

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None without rows)."""
        found = self.rows(conn, params)
        return found[0][0] if found else None


class DirectWrite(DirectRead):
    """An UPDATE or DELETE compiled once per dialect, run on the driver's cursor in ``conn``'s transaction
    (begun first if there is none, as ``Connection.execute`` would)."""

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Run the statement with ``params``; the number of rows it matched."""
        return self._execute(conn, params, lambda cursor: cursor.rowcount)


@contextlib.contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """Send the block's statements on ``conn`` without waiting for each one's answer (psycopg's pipeline mode,
    on PostgreSQL): a transaction's BEGIN and inserts go out together and are answered when the block reads
    a result (a ``DirectRead``) or ends, one round trip instead of one per statement. Elsewhere it does
    nothing.

    Only statements on the driver's cursor (``DirectRead``, ``DirectWrite``, ``insert_rows``) belong in the
    block: ``Connection.execute`` reads each statement's result, which ends the batching at that statement.
    A statement's error comes out at the next read of a result or at the block's end, not where it was
    sent, as SQLAlchemy's error (e.g. ``IntegrityError``); the transaction is then to be rolled back.
    """
    if conn.dialect.driver != "psycopg":
        yield
        return
    _autobegin(conn)
    fairy = conn.connection
    driver = fairy.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except conn.dialect.loaded_dbapi.Error as error:
        conn._handle_dbapi_exception(error, None, None, None, None)
        raise  # not reached: the handler raises


_DRIVERS = ("pysqlite", "psycopg")  # the drivers whose cursors take multi-row statements here


def insert_rows(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]], *,
                assigned: bool = False) -> list[int] | None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` as multi-row ``INSERT`` statements on the
    driver's cursor, in ``conn``'s transaction (begun first if there is none, as ``Connection.execute``
    would). Rows get their ``seq`` (autoincrement) in the order given: on SQLite the rows of a ``VALUES``
    list are inserted in order; on PostgreSQL, which does not promise that, the statement is
    ``INSERT ... SELECT ... FROM (VALUES ...) ORDER BY`` the row's number (as SQLAlchemy's own
    insertmanyvalues does).

    ``Connection.execute`` with a list of rows is the driver's ``executemany``: on SQLite one step per
    row, and sqlite3 gives the GIL back at every step. A writer holds the store's write lock meanwhile,
    and under load it must win the GIL back from every other thread each time: a batch of access
    records held the lock for 28 ms (p50) that way. On PostgreSQL psycopg sends one INSERT per row (and
    array parameters, as an ``unnest`` of them needs, are dumped element by element in Python). Rows go in chunks
    of power-of-two sizes (64, then the binary digits of the rest), so a table has a handful of
    statements for the driver's statement cache (psycopg prepares them), not one per batch size.
    Values are converted as SQLAlchemy would convert them (bytes go to the driver as they are), and
    errors come out as from ``Connection.execute`` (``sqlalchemy.exc.IntegrityError`` for a duplicate).
    A column with a Python-side default must be given. Another driver gets ``Connection.execute``.
    Inside a ``store.one_statement`` block on PostgreSQL the rows are queued, and sent with the block's others
    as one statement when it ends (then nothing is returned here: see ``Written.max_key``).

    ``assigned`` (a table keyed by one autoincrement integer that ``rows`` do not give): on SQLite, the key
    each row got, in order, without reading them back (a statement less in the writer's transaction, whose
    every step gives the GIL back under the write lock). SQLite gives each row of a multi-row ``INSERT``
    the table's largest key plus one, in turn ("the usual algorithm" of its ROWID documentation; it picks
    keys at random only once the largest reaches 2^63 - 1, which keys it assigns itself never reach), so
    a chunk's keys end at the driver's ``lastrowid``; where a chunk's count or keys do not add up, None.
    None on other stores: read them.
    """
    if assigned:
        key = list(table.primary_key.columns)
        if len(key) != 1 or table.autoincrement_column is not key[0] or key[0].name in (rows[0] if rows else {}):
            raise TypeError(f"insert_rows(assigned=True) needs a table keyed by one autoincrement column that the "
                            f"rows do not give; {table.name} is keyed by {[c.name for c in key]}")
    if not rows:
        return [] if assigned else None
    if conn.dialect.driver not in _DRIVERS:
        conn.execute(insert(table), list(rows))
        return None
    names = tuple(rows[0])
    plan = _plan(table, names, conn.dialect)
    queued = conn.info.get(COLLECTING) if conn.dialect.driver == "psycopg" else None
    if queued is not None:  # inside store.one_statement: sent with the block's other rows when it ends, all
        queued.add(table, plan.statement(len(rows)), _row_values(rows, names, plan.processors), assigned)  # in one
        return None
    keys: list[int] | None = [] if assigned and conn.dialect.name == "sqlite" else None
    _autobegin(conn)
    with _driver_cursor(conn, plan.statement(1), None) as cursor:
        start = 0
        for size in chunk_sizes(len(rows), len(names)):
            chunk = rows[start:start + size]
            start += size
            cursor.execute(plan.statement(size), _row_values(chunk, names, plan.processors))
            if keys is not None:
                keys = _chunk_keys(keys, cursor.lastrowid, cursor.rowcount, size)
    return keys


def _chunk_keys(keys: list[int], last: Any, count: int, size: int) -> list[int] | None:
    """``keys`` and then those of a chunk of ``size`` rows whose last got ``last``; None if they do not add up
    (a count other than the chunk's, a key below 1, or not right after the chunk before)."""
    if not isinstance(last, int) or count != size or last - size + 1 < 1 or (keys and keys[-1] != last - size):
        return None
    keys.extend(range(last - size + 1, last + 1))
    return keys


_Processors = tuple[tuple[int, Callable[[Any], Any]], ...]


class _InsertPlan:
    """How rows of some columns of a table are inserted on one dialect: the values' conversions and the
    statement for each chunk size."""

    def __init__(self, table: Table, names: tuple[str, ...], dialect: Dialect) -> None:
        missing = [c.name for c in table.columns if c.name not in names and c.default is not None]
        if missing:
            raise TypeError(f"insert_rows into {table.name} needs values for {missing}: those columns have "
                            "Python-side defaults, which only Connection.execute applies")
        self.processors: _Processors = tuple(
            (i, p) for i, name in enumerate(names) if (p := _bind_processor(table.c[name].type, dialect)) is not None)
        target = f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'
        quoted = ", ".join(f'"{name}"' for name in names)  # names from the schema (e.g. "key"), never from callers
        if dialect.driver == "psycopg":
            # every value cast to its column's type (a VALUES list in a sub-select gets no INSERT's
            # conversions), the row's number last
            values = ", ".join(f"%s::{_cast_type(table.c[n].type, dialect)}" for n in names)
            self._head = f'INSERT INTO {target} ({quoted}) SELECT {quoted} FROM (VALUES '
            self._tail = f') AS v({quoted}, "privtune_row") ORDER BY "privtune_row"'
            self._row: Callable[[int], str] = lambda i: f"({values}, {i})"
        else:
            self._head, self._tail = f"INSERT INTO {target} ({quoted}) VALUES ", ""
            one = "(" + ", ".join("?" * len(names)) + ")"
            self._row = lambda _i: one
        self._statements: dict[int, str] = {}

    def statement(self, count: int) -> str:
        found = self._statements.get(count)
        if found is None:
            found = self._head + ", ".join(self._row(i) for i in range(count)) + self._tail
            self._statements[count] = found
        return found


def _cast_type(kind: TypeEngine, dialect: Dialect) -> str:
    """What a value of a column of type ``kind`` is cast to in a PostgreSQL multi-row insert: its own type,
    but a string as TEXT (an explicit cast to VARCHAR(n) would cut an overlong value; the assignment to
    the column checks its length instead). An enum or another type keeps its own name."""
    impl = kind.dialect_impl(dialect)
    base = impl.impl if isinstance(impl, TypeDecorator) else impl
    if isinstance(base, String) and not isinstance(base, Enum):
        return "TEXT"
    return kind.compile(dialect)


_PLANS: dict[tuple[Table, tuple[str, ...], tuple[str, str, str]], _InsertPlan] = {}


def _plan(table: Table, names: tuple[str, ...], dialect: Dialect) -> _InsertPlan:
    """The plan for these columns of ``table`` on ``dialect``, made once (a race makes it twice, alike)."""
    key = (table, names, _key(dialect))  # the same conversions and SQL for every engine of one driver
    found = _PLANS.get(key)
    if found is None:
        found = _PLANS.setdefault(key, _InsertPlan(table, names, dialect))
    return found


def _row_values(rows: Sequence[Mapping[str, Any]], names: tuple[str, ...], processors: _Processors) -> list[Any]:
    if not processors:
        return [row[name] for row in rows for name in names]
    values = []
    for row in rows:
        one = [row[name] for name in names]
        for i, process in processors:
            one[i] = process(one[i])
        values.extend(one)
    return values
