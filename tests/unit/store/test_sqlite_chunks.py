"""How multi-row appends split their rows and what they send (services/common/store/direct.py)."""

from __future__ import annotations

from sqlalchemy import create_engine
from sqlalchemy.dialects.postgresql import psycopg

from services.common.chunk_sizes import SQLITE_MAX_VARIABLES
from services.common.chunk_sizes import chunk_sizes as _chunks
from services.common.store.direct import _plan
from services.common.store.schema import outbox


def test_chunks_cover_every_row_within_the_variable_limit_with_few_statement_shapes() -> None:
    for width in (1, 6, 8, 9, 200, SQLITE_MAX_VARIABLES):
        shapes: set[int] = set()
        for count in range(0, 600):
            sizes = _chunks(count, width)
            assert sum(sizes) == count
            assert all(size * width <= SQLITE_MAX_VARIABLES and size <= 64 for size in sizes)
            assert sizes == sorted(sizes, reverse=True)  # rows keep their order: chunks are taken front to back
            shapes.update(sizes)
        assert len(shapes) <= 7, (width, shapes)  # the driver's statement cache holds them all
    assert _chunks(100, 8) == [64, 32, 4] and _chunks(3, 8) == [2, 1] and _chunks(0, 8) == []


def test_a_multi_row_insert_quotes_its_names_and_has_one_placeholder_per_value() -> None:
    sqlite = create_engine("sqlite://").dialect
    assert _plan(outbox, ("key", "attempts"), sqlite).statement(3) == \
        'INSERT INTO "outbox" ("key", "attempts") VALUES (?, ?), (?, ?), (?, ?)'


def test_a_postgresql_multi_row_insert_casts_each_value_and_orders_the_rows_by_their_number() -> None:
    """Strings are cast as TEXT (never VARCHAR(n), which would cut an overlong one), the rest as their
    column's type; the rows go in by their number (their ``seq`` follows the order given)."""
    sql = _plan(outbox, ("event_id", "payload", "attempts"), psycopg.dialect()).statement(2)
    assert sql == ('INSERT INTO "outbox" ("event_id", "payload", "attempts") SELECT "event_id", "payload", "attempts" '
                   'FROM (VALUES (%s::TEXT, %s::BYTEA, %s::INTEGER, 0), (%s::TEXT, %s::BYTEA, %s::INTEGER, 1)) '
                   'AS v("event_id", "payload", "attempts", "privtune_row") ORDER BY "privtune_row"')
