"""The SQLite store's writers and readers (issue 17): writers of one process queue on a lock that is
always given back (commit, rollback, a failed BEGIN, an invalidated connection); readers never queue."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from services.common.store.engine import create_store_engine, reader

pytestmark = pytest.mark.unit


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    made = create_store_engine(f"sqlite:///{tmp_path}/w.db")
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE t (writer INTEGER, n INTEGER)"))
    yield made
    made.dispose()


def _in_thread(fn, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the writer never got the lock"
    assert not errors, errors


def test_many_writers_all_commit_and_a_rollback_gives_the_lock_back(engine) -> None:  # type: ignore[no-untyped-def]
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            write_all(w)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def write_all(w: int) -> None:
        for n in range(25):
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:w, :n)"), {"w": w, "n": n})
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:w, -1)"), {"w": w})
            raise RuntimeError("rolled back")
    threads = [threading.Thread(target=write, args=(w,)) for w in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(t.is_alive() for t in threads) and not errors, errors
    with reader(engine).connect() as conn:
        assert conn.execute(text("SELECT count(*), min(n) FROM t")).one() == (12 * 25, 0)


def test_an_invalidated_or_abandoned_writer_gives_the_lock_back(engine) -> None:  # type: ignore[no-untyped-def]
    conn = engine.connect()
    conn.begin()
    conn.execute(text("INSERT INTO t VALUES (1, 1)"))
    conn.invalidate()  # e.g. a disconnect error: no commit, no rollback through the dialect
    conn.close()
    _in_thread(lambda: _one_write(engine))
    left = engine.connect()  # a writer that just goes away: closing it rolls back, and gives the lock back
    left.begin()
    left.execute(text("INSERT INTO t VALUES (2, 2)"))
    left.close()
    _in_thread(lambda: _one_write(engine))
    with reader(engine).connect() as conn:
        assert sorted(conn.execute(text("SELECT writer FROM t")).scalars()) == [3, 3]


def _one_write(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (3, 3)"))


def test_readers_do_not_wait_for_a_writer_and_cannot_write(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as writer:
        writer.execute(text("INSERT INTO t VALUES (9, 9)"))
        with reader(engine).connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 0  # the last commit, not the writer's
            with pytest.raises(Exception, match="readonly"):
                conn.execute(text("INSERT INTO t VALUES (0, 0)"))
    with reader(engine).connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1
