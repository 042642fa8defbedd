"""The SQLite store's writers and readers (issue 17): writers of one process queue on a lock that is
always given back (commit, rollback, a failed BEGIN, an invalidated connection); readers never queue."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from services.common.store.engine import create_store_engine, reader
from tests.platform_fixtures import wait_until

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


def _writer_lock(engine):  # type: ignore[no-untyped-def]
    from services.common.store.engine import _WRITERS

    return getattr(engine, _WRITERS)


def _writer(engine, name: int, serving: bool, order: list[int]):  # type: ignore[no-untyped-def]
    from services.common.store.engine import serves_calls

    def run() -> None:
        if serving:
            serves_calls()  # as the gRPC server's worker threads are marked when they start
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (:w, 0)"), {"w": name})
            order.append(name)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_writer_serving_a_call_goes_before_background_writers(engine) -> None:  # type: ignore[no-untyped-def]
    """Background writers (the relay, the access recorder, consumers) that wait for the lock let a writer that
    serves a call pass, though it came later; and go on once it is through."""
    lock = _writer_lock(engine)
    lock.YIELD_S = 60.0  # as long as this test may take: the order is not a race (this test's own engine)
    order: list[int] = []
    with engine.begin() as holder:
        holder.execute(text("INSERT INTO t VALUES (0, 0)"))
        background = [_writer(engine, n, False, order) for n in (1, 2)]
        wait_until(lambda: lock.waiting() == (0, 2), what="two background writers wait")
        call = _writer(engine, 3, True, order)
        wait_until(lambda: lock.waiting() == (1, 2), what="a writer serving a call waits beside them")
    for thread in [call, *background]:
        thread.join(30)
    assert not any(t.is_alive() for t in [call, *background])
    assert order[0] == 3 and sorted(order[1:]) == [1, 2], order
    assert lock.waiting() == (0, 0)


def test_a_background_writer_is_not_starved_by_calls(engine) -> None:  # type: ignore[no-untyped-def]
    """Past ``YIELD_S`` of waiting, a background writer takes its turn beside writers serving calls, however
    many keep coming."""
    from services.common.store.engine import serves_calls

    lock = _writer_lock(engine)
    lock.YIELD_S = 0.05
    lock.WAIT_S = 600.0  # no going on without the lock within this test
    order: list[int] = []
    background_done = threading.Event()
    calls_after: list[int] = []

    def calls(n: int) -> None:  # writers serving calls, one after another, until the background one is through
        serves_calls()
        for i in range(20_000):
            if background_done.is_set():
                calls_after.append(i)
                return
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:w, :i)"), {"w": 100 + n, "i": i})

    with engine.begin() as holder:
        holder.execute(text("INSERT INTO t VALUES (0, 0)"))
        callers = [threading.Thread(target=calls, args=(n,), daemon=True) for n in range(3)]
        for thread in callers:
            thread.start()
        wait_until(lambda: lock.waiting()[0] >= 1, what="writers serving calls wait")
        background = _writer(engine, 1, False, order)
        wait_until(lambda: lock.waiting()[1] == 1, what="the background writer waits")
    background.join(120)
    assert order == [1], "the background writer never got the lock"
    background_done.set()
    for thread in callers:
        thread.join(60)
    assert len(calls_after) == 3  # every caller was still writing when it was through: it got a turn among them


def test_a_call_is_not_starved_by_loops_that_keep_coming(engine) -> None:  # type: ignore[no-untyped-def]
    """Loops that begin again the moment they commit, all of them past ``YIELD_S``, do not keep a writer that
    serves a call waiting: whoever has waited longest goes first."""
    lock = _writer_lock(engine)
    lock.YIELD_S = 0.0  # every waiter is past it at once
    lock.WAIT_S = 600.0
    call_done = threading.Event()
    loop_writes: list[int] = []

    def loop(n: int) -> None:  # a background loop's writer, beginning again at once
        for i in range(20_000):
            if call_done.is_set():
                return
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (:w, :i)"), {"w": 200 + n, "i": i})
            loop_writes.append(n)

    order: list[int] = []
    with engine.begin() as holder:
        holder.execute(text("INSERT INTO t VALUES (0, 0)"))
        loops = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(3)]
        for thread in loops:
            thread.start()
        wait_until(lambda: lock.waiting()[1] == 3, what="the loops wait")
    wait_until(lambda: len(loop_writes) >= 6, what="the loops take turns")
    call = _writer(engine, 9, True, order)
    call.join(120)
    written = len(loop_writes)
    call_done.set()
    for thread in loops:
        thread.join(60)
    assert order == [9], "the writer serving a call never got the lock"
    assert written < 3 * 20_000  # the loops were still writing when it was through


class _Interrupted(BaseException):
    """Stands for a KeyboardInterrupt (a signal) arriving in a waiting writer."""


@pytest.mark.parametrize("after_handed", [False, True], ids=["while-queued", "once-handed-the-lock"])
def test_an_interrupted_waiter_leaves_the_lock_to_the_others(engine, monkeypatch,  # type: ignore[no-untyped-def]
                                                             after_handed: bool) -> None:
    """Interrupted in its wait, a writer leaves the line (or, once handed the lock, hands it on) and raises:
    the writers after it get the lock at once, not after ``WAIT_S``."""
    from services.common.store import engine as store_engine

    lock = _writer_lock(engine)
    lock.WAIT_S = 600.0  # a lock left with a gone writer would outlast the joins
    victim: list[threading.Thread] = []

    class Wake(threading.Condition):
        def wait(self, timeout=None):  # type: ignore[no-untyped-def]
            if threading.current_thread() in victim:
                if after_handed:
                    super().wait(timeout)  # woken: handed the lock
                raise _Interrupted()
            return super().wait(timeout)

    @dataclasses.dataclass(eq=False)
    class Waiter(store_engine._Waiter):
        def __post_init__(self) -> None:
            self.wake = Wake(self.wake._lock)  # type: ignore[attr-defined]

    monkeypatch.setattr(store_engine, "_Waiter", Waiter)
    order: list[int] = []
    errors: list[BaseException] = []

    def interrupted() -> None:
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO t VALUES (1, 0)"))
                order.append(1)
        except _Interrupted as exc:
            errors.append(exc)

    with engine.begin() as holder:
        holder.execute(text("INSERT INTO t VALUES (0, 0)"))
        victim.append(threading.Thread(target=interrupted, daemon=True))
        victim[0].start()
        if after_handed:
            wait_until(lambda: lock.waiting() == (0, 1), what="the victim waits")
        else:
            victim[0].join(30)
            assert errors and lock.waiting() == (0, 0)
        other = _writer(engine, 2, False, order)
        wait_until(lambda: lock.waiting() == (0, 1 + after_handed), what="another writer waits")
    victim[0].join(30)
    other.join(30)
    assert not victim[0].is_alive() and not other.is_alive(), "a writer still waits for a lock nobody holds"
    assert len(errors) == 1 and order == [2] and lock.waiting() == (0, 0)
    _one_write(engine)  # and the lock is free
