"""A write of rows into several tables as one PostgreSQL statement, its commit included.

Under load a statement's time is mostly the waits for the interpreter's lock: each wait for the socket gives
it back, and winning it back takes as long as the other threads hold it. A create in a transaction waited for
BEGIN, for a pipelined block (psycopg polls the socket once per statement it queues), for the read of the
job's position and for COMMIT: 39 of its 58 ms (mean) under the benchmark's load were spent in those waits
(docs/benchmarks.md, issue 17's tenth pass).

Inside ``one_statement(conn)``, ``direct.insert_rows`` on PostgreSQL queues its rows instead of sending them;
when the block ends they go out as one statement, a ``WITH`` of one data-modifying ``INSERT`` per table, whose
answer is the largest key that each table inserted with ``assigned=True`` got (``Written.max_key``). On a
connection of ``autocommit(engine)`` that statement is its own transaction: every row of it is stored, or none
(a duplicate key anywhere fails the whole statement). On a connection in a transaction it joins that
transaction (BEGIN is sent first if none was), to be committed by the caller. Elsewhere (SQLite, whose writers
take the write lock with ``BEGIN IMMEDIATE``; or a block that raised) nothing is queued or nothing is sent:
``insert_rows`` runs as without the block.

One ``insert_rows`` call per table belongs in a block (its rows go as one ``INSERT``, in the order given):
PostgreSQL runs the statements of a ``WITH`` in no set order, so two inserts into one table could number their
rows out of the order given (an event stream's versions, the relay's publishing order); a second one raises. A
statement's keys are taken as it runs, and PostgreSQL runs the request id's claim (a part the final query does
not read) after the events' insert (which it reads), in practice though not by promise: a create that loses a
race for its request id leaves gaps in ``seq`` and ``outbox.seq``, and one that waited at the key commits
numbers taken before others committed theirs. That was so of transactions before (``seq`` order is not commit
order); the outbox relay deletes what it published by event id, not by ``seq``. Each distinct row count is a
statement text of its own (prepared once per connection): meant for a few rows per table, as a create's. Only
``insert_rows`` belongs in the block: a ``DirectRead`` or ``DirectWrite`` inside it raises (its answer would
come before rows queued ahead of it are written); ``Connection.execute`` would run at once, out of order, so
do not use it there.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator

from sqlalchemy import Connection, Engine, Table

from services.common.store.direct import COLLECTING, _driver_cursor, _autobegin

MAX_PARAMETERS = 65_535  # PostgreSQL's limit on one statement's parameters (its protocol counts them in 16 bits)


@dataclass
class Written:
    """What the block's statement answered: the largest key each table inserted with ``assigned=True`` got."""

    keys: dict[str, int] = field(default_factory=dict)
    sent: bool = False  # whether the rows went out as one statement (False: inserted as they came, or none)

    def max_key(self, table: Table) -> int | None:
        """The largest key ``table``'s rows got in the statement; None where it was not sent that way."""
        return self.keys.get(table.name)


@dataclass
class _Queued:
    parts: list[tuple[str, list[Any], str | None, str]] = field(default_factory=list)  # SQL, values, key, table
    parameters: int = 0

    def add(self, table: Table, statement: str, values: list[Any], assigned: bool) -> None:
        """Called by ``insert_rows`` with all its rows as one statement (not chunked: one insert per table)."""
        if any(name == table.name for *_, name in self.parts):
            raise ValueError(f"one_statement: a second insert into {table.name} in one block; PostgreSQL runs "
                             "a WITH's statements in no set order, so their rows' keys could come out of the order "
                             "given: write them in a transaction")
        self.parameters += len(values)
        if self.parameters > MAX_PARAMETERS:
            raise ValueError(f"one_statement: more than {MAX_PARAMETERS} values in one statement; write "
                             "fewer rows in the block")
        key = table.autoincrement_column.name if assigned and table.autoincrement_column is not None else None
        self.parts.append((statement, values, key, table.name))

    def statement(self) -> tuple[str, list[Any], list[str]]:
        """The SQL, its values in order, and the table each answer column is the largest key of."""
        ctes, values, answers, tables = [], [], [], []
        for i, (sql, part_values, key, table) in enumerate(self.parts):
            returning = f' RETURNING "{key}"' if key else ""  # a column name from the schema
            ctes.append(f'"w{i}" AS ({sql}{returning})')
            values.extend(part_values)
            if key:
                answers.append(f'(SELECT max("{key}") FROM "w{i}")')
                tables.append(table)
        # data-modifying statements in WITH run once and to completion whether or not the query reads them
        return f"WITH {', '.join(ctes)} SELECT {', '.join(answers) or '1'}", values, tables


def autocommit(engine: Engine) -> Engine | None:
    """The engine whose connections commit each statement as it runs, for writes that ``one_statement`` makes one
    statement (it shares ``engine``'s pool); None where there is no such write (SQLite, another driver)."""
    if engine.dialect.driver != "psycopg":
        return None
    found = getattr(engine, _AUTOCOMMIT, None)
    if found is None:
        found = engine.execution_options(isolation_level="AUTOCOMMIT")
        setattr(engine, _AUTOCOMMIT, found)  # a race makes two alike; either serves
    return found


_AUTOCOMMIT = "_privtune_autocommit"


@contextlib.contextmanager
def one_statement(conn: Connection) -> Iterator[Written]:
    """The block's ``insert_rows`` on ``conn``, sent as one statement when it ends (see the module doc).

    Raises (at the block's end) what the statement raised, as ``Connection.execute`` would
    (``sqlalchemy.exc.IntegrityError`` for a duplicate key: no row of the block is stored then).
    """
    written = Written()
    if conn.dialect.driver != "psycopg":
        yield written
        return
    if COLLECTING in conn.info:
        raise RuntimeError("one_statement blocks do not nest")
    info = conn.info  # looked up once: a block that broke the connection cannot hide its error behind a new look-up
    queued = _Queued()
    info[COLLECTING] = queued
    try:
        yield written
    finally:
        info.pop(COLLECTING, None)
    if not queued.parts:
        return
    sql, values, tables = queued.statement()
    _autobegin(conn)
    with _driver_cursor(conn, sql, None) as cursor:  # None: the values (event payloads) stay out of an error
        cursor.execute(sql, values)
        row = cursor.fetchone()
    written.sent = True
    written.keys = {table: int(key) for table, key in zip(tables, row) if key is not None}


UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE for a duplicate key


def duplicate_in(error: BaseException) -> str | None:
    """The table whose unique key a failed statement's row duplicated, as PostgreSQL names it; None for any
    other error (a NOT NULL or CHECK violation names a table too, but is not a duplicate: re-raise it)."""
    orig = getattr(error, "orig", None)
    if getattr(orig, "sqlstate", None) != UNIQUE_VIOLATION:
        return None
    return getattr(getattr(orig, "diag", None), "table_name", None) or None
