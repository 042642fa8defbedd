"""How SQLite multi-row appends split their rows (services/common/store/direct.py)."""

from __future__ import annotations

from services.common.store.direct import SQLITE_MAX_VARIABLES, _chunks, _multi_insert


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
    sql = _multi_insert("outbox", ("event_id", "key"), 3)
    assert sql == 'INSERT INTO "outbox" ("event_id", "key") VALUES (?, ?), (?, ?), (?, ?)'
