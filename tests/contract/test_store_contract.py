"""The metadata-store contract, run on SQLite and PostgreSQL: migrations, event store, outbox, dedupe."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict
from services.common.store import metadata, open_store
from services.common.store.engine import PING_AFTER_IDLE_S, reader
from services.common.store.schema import outbox, stored_events
from services.common.topics import DATASET_EVENTS
from tests.stores import fresh_store_url

pytestmark = pytest.mark.contract


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = open_store(fresh_store_url(request, request.param, tmp_path))
    yield e
    e.dispose()


def _event(stream: str, tenant: str = "acme") -> events_pb2.EventEnvelope:
    return new_envelope(events_pb2.DatasetRegistered(dataset_id=stream, name=stream), subject=stream,
                        tenant_id=tenant, source="test", causation=Causation("alice", "c"))


def test_migrations_match_the_declared_schema(engine: Engine) -> None:
    import importlib

    from privtune.platform import SERVICES

    for module in SERVICES.values():  # every service declares its tables on import
        importlib.import_module(module)
    importlib.import_module("services.audit.tables")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_migrating_twice_is_a_no_op(engine: Engine) -> None:
    open_store(engine.url.render_as_string(hide_password=False)).dispose()


def test_append_writes_events_and_outbox_in_one_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [_event("ds-1"), _event("ds-1")], expected_version=0)
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "ds-1") == 2
        loaded = eventstore.load_stream(conn, "acme", "ds-1")
        assert [e.aggregate_version for e in loaded] == [1, 2]
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 2
        assert eventstore.load_stream(conn, "globex", "ds-1") == []  # tenant scoped


def test_many_new_streams_at_once_land_together_or_not_at_all(engine: Engine) -> None:
    """Also past the rows one statement takes (SQLite's multi-row INSERT: 64): every row, in order, or none."""
    n = 250
    with engine.begin() as conn:
        eventstore.append_new_streams(conn, "access", [_event(f"new-{i}") for i in range(n)])
    with engine.connect() as conn:
        assert {eventstore.stream_version(conn, f"new-{i}") for i in range(n)} == {1}
        # positions (and the relay's order) follow the order given
        assert list(conn.execute(select(stored_events.c.stream_id).order_by(stored_events.c.seq)).scalars()) == \
            [f"new-{i}" for i in range(n)]
        assert list(conn.execute(select(outbox.c.key).order_by(outbox.c.seq)).scalars()) == \
            [f"new-{i}" for i in range(n)]
        payloads = dict(conn.execute(select(stored_events.c.stream_id, stored_events.c.payload)).all())
        assert eventstore.load_stream(conn, "acme", "new-249")[0].subject == "new-249"
        assert len(set(payloads.values())) == n
    # new-1 exists; it comes last, in the last of the lot's statements: none of the lot lands
    with pytest.raises(ConcurrencyConflict), engine.begin() as conn:
        eventstore.append_new_streams(conn, "access", [_event(f"more-{i}") for i in range(220)] + [_event("new-1")])
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "more-0") == 0
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == n
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == n


def test_new_streams_positions_told_by_the_store_are_the_ones_stored(engine: Engine) -> None:
    """``append_to_new_streams``' positions (SQLite: the keys the driver says it gave, not read back) are each
    stream's newest ``seq`` as ``stream_positions`` reads them: one statement or several (more rows than one
    takes), several events per stream, and after the newest rows were deleted (SQLite then gives their
    numbers again). Elsewhere it says None: the caller reads them."""
    from services.common.store.direct import _chunk_keys, insert_rows
    from services.common.store.schema import unique_names

    def streams(prefix: str, n: int, per: int) -> list[list[events_pb2.EventEnvelope]]:
        return [[_event(f"{prefix}-{i}") for _ in range(per)] for i in range(n)]

    sqlite = engine.dialect.name == "sqlite"
    for prefix, n, per in (("a", 1, 1), ("b", 3, 2), ("c", 150, 1), ("d", 70, 3), ("e", 2, 1)):
        with engine.begin() as conn:
            told = eventstore.append_to_new_streams(conn, "dataset", streams(prefix, n, per))
            read = eventstore.stream_positions(conn, [f"{prefix}-{i}" for i in range(n)])
        assert len(read) == n
        assert told == read if sqlite else told is None, (prefix, told, read)
        if prefix == "d":  # the newest rows go: their numbers come back on SQLite
            with engine.begin() as conn:
                conn.execute(stored_events.delete().where(stored_events.c.stream_id.like("d-%")))
    with engine.begin() as conn:
        assert eventstore.append_to_new_streams(conn, "dataset", []) == {}
        with pytest.raises(TypeError, match="autoincrement"):  # keys it cannot tell
            insert_rows(conn, unique_names, [dict(tenant_id="acme", kind="k", name="n", aggregate_id="a")],
                        assigned=True)
    # a chunk whose count or keys do not add up is not trusted: the caller reads the keys instead
    assert _chunk_keys([1, 2], 5, 2, 2) is None and _chunk_keys([], 5, 1, 2) is None
    assert _chunk_keys([], 1, 2, 2) is None and _chunk_keys([], None, 2, 2) is None
    assert _chunk_keys([1, 2], 4, 2, 2) == [1, 2, 3, 4]


def test_a_failed_command_leaves_no_event_and_no_outbox_row(engine: Engine) -> None:
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            eventstore.append(conn, "dataset", [_event("ds-2")], expected_version=0)
            raise RuntimeError("the command's other write failed")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0


def test_concurrent_writers_conflict_instead_of_interleaving(engine: Engine) -> None:
    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [_event("ds-3")], expected_version=0)
    with pytest.raises(ConcurrencyConflict, match="retry"):
        with engine.begin() as conn:
            eventstore.append(conn, "dataset", [_event("ds-3")], expected_version=0)
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "ds-3") == 1
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 1


def test_parallel_appends_to_different_streams_all_land(engine: Engine) -> None:
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for j in range(10):
                with engine.begin() as conn:
                    eventstore.append(conn, "dataset", [_event(f"w{i}-{j}")], expected_version=0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 40
        seqs = [r.seq for r in conn.execute(select(outbox.c.seq).order_by(outbox.c.seq))]
        assert len(set(seqs)) == 40


def test_processes_migrating_at_once_do_not_collide(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    import subprocess
    import sys

    for backend in ("sqlite", "postgresql"):
        url = fresh_store_url(request, backend, tmp_path)
        code = "import sys; from services.common.store import open_store; open_store(sys.argv[1]).dispose()"
        root = Path(__file__).resolve().parents[2]
        procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=root, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-2000:]
        engine = open_store(url)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        engine.dispose()


def test_leases_one_holder_and_a_lapsed_lease_only_taken_over_explicitly(engine: Engine) -> None:
    from services.common.leases import lease_holder, release_lease, take_lease, take_unclaimed_lease

    assert take_lease(engine, "job:1", "a", 60_000)
    assert take_lease(engine, "job:1", "a", 60_000)            # a renewal
    assert not take_lease(engine, "job:1", "b", 60_000)        # live: one holder
    assert not take_unclaimed_lease(engine, "job:1", "b", 60_000)
    assert take_lease(engine, "job:2", "a", -1)                 # already lapsed
    assert not take_unclaimed_lease(engine, "job:2", "b", 60_000)  # lapsed stays with its last holder...
    with engine.connect() as conn:
        assert lease_holder(conn, "job:2") == "a"
    assert take_lease(engine, "job:2", "b", 60_000)            # ...until taken over explicitly
    release_lease(engine, "job:2", "a")                         # not a's any more: left alone
    with engine.connect() as conn:
        assert lease_holder(conn, "job:2") == "b"
    release_lease(engine, "job:2", "b")
    assert take_unclaimed_lease(engine, "job:2", "c", 60_000)  # released: free for anyone
    assert not take_unclaimed_lease(engine, "job:2", "d", 60_000)



@pytest.fixture
def postgres_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = open_store(fresh_store_url(request, "postgresql", tmp_path))
    yield e
    e.dispose()


def test_a_connection_dropped_while_idle_is_replaced_before_anyone_uses_it(postgres_engine: Engine) -> None:
    """(PostgreSQL: SQLite has no server to drop a connection.) A server restart or a proxy's idle
    timeout kills pooled connections: the next reader and writer still get working ones, because a
    connection idle for ``PING_AFTER_IDLE_S`` is pinged before it is handed out (busy ones are not)."""
    engine = postgres_engine
    with reader(engine).connect() as r, engine.begin() as w:  # two pooled connections, both used
        pids = {r.execute(text("SELECT pg_backend_pid()")).scalar(), w.execute(text("SELECT pg_backend_pid()")).scalar()}
    admin = create_engine(engine.url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT",
                          poolclass=NullPool)
    with admin.connect() as conn:
        killed = conn.execute(text("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE pid = ANY(:pids)) t"), {"pids": list(pids)}).scalar()
    admin.dispose()
    assert killed == 2
    time.sleep(PING_AFTER_IDLE_S + 0.2)  # idle long enough to be pinged
    with reader(engine).connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() not in pids
    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [_event("after-drop")], expected_version=0)
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() not in pids
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "after-drop") == 1


def test_one_relay_publishes_at_a_time_and_one_that_lost_its_lease_stops(engine: Engine, tmp_path: Path) -> None:
    """The relay holding the lease renews it with each batch's mark (no lease write of its own per batch); a
    second relay publishes nothing meanwhile; a relay whose lease was taken over notices at its next mark
    and starts no batch after that; a lapsed lease is taken over."""
    from sqlalchemy import update

    from services.common.bus import open_bus
    from services.common.outbox import OutboxRelay
    from services.common.store.schema import relay_leases

    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")
    first, second = OutboxRelay(engine, bus), OutboxRelay(engine, bus)

    def lease() -> tuple[str, int]:
        with engine.connect() as conn:
            row = conn.execute(select(relay_leases.c.owner, relay_leases.c.lease_until_ms)
                               .where(relay_leases.c.name == "outbox")).one()
            return row.owner, row.lease_until_ms

    def one_event(name: str) -> None:
        with engine.begin() as conn:
            eventstore.append(conn, "dataset", [_event(name)], expected_version=0)

    def set_lease(**values: object) -> None:
        with engine.begin() as conn:
            conn.execute(update(relay_leases).where(relay_leases.c.name == "outbox").values(**values))

    one_event("r-1")
    assert first.publish_pending() == 1
    taken = lease()
    assert taken[0] == first.owner
    one_event("r-2")
    assert second.publish_pending() == 0          # the first holds the lease
    time.sleep(0.01)
    assert first.publish_pending() == 1
    assert lease()[0] == first.owner and lease()[1] > taken[1]  # renewed by the batch's mark
    set_lease(owner="another-relay")               # taken over (say the first stalled past its lease)
    one_event("r-3")
    assert first.publish_pending() == 1            # one batch already under way when it was taken...
    one_event("r-4")
    assert first.publish_pending() == 0            # ...and none after: its mark saw the lease was gone
    assert second.publish_pending() == 0           # another relay's live lease
    set_lease(lease_until_ms=0)                    # that relay died: its lease lapsed
    assert second.publish_pending() == 1
    assert lease()[0] == second.owner
    assert first.publish_pending() == 0 and first.pending() == 0
    assert sorted(_bus_keys(bus, 4)) == [b"r-1", b"r-2", b"r-3", b"r-4"]
    bus.close()


def test_direct_reads_answer_as_sqlalchemy_does_inside_and_outside_transactions(engine: Engine) -> None:
    """A DirectRead (the driver's cursor) gives the rows Connection.execute gives, with filter literals and
    repeated parameters; inside a writer's transaction it sees that transaction's own writes, and on a
    writer's connection outside one it begins one first (SQLite: the write lock, as autobegin takes it)."""
    from sqlalchemy import bindparam

    from services.common.store.direct import DirectRead

    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [_event("d-1"), _event("d-1")], expected_version=0)
        eventstore.append(conn, "dataset", [_event("d-2", tenant="other")], expected_version=0)
    e = stored_events.c
    statement = (select(e.stream_id, e.stream_version, e.payload)
                 .where(e.tenant_id == bindparam("tenant"), e.stream_version >= 1,
                        e.stream_id.in_(select(stored_events.c.stream_id).where(e.tenant_id == bindparam("tenant"))))
                 .order_by(e.stream_version))
    direct = DirectRead(statement)
    with reader(engine).connect() as conn:
        assert [tuple(r) for r in direct.rows(conn, {"tenant": "acme"})] == \
            [tuple(r) for r in conn.execute(statement, {"tenant": "acme"}).all()]
        assert [r[:2] for r in direct.rows(conn, {"tenant": "acme"})] == [("d-1", 1), ("d-1", 2)]
        assert direct.rows(conn, {"tenant": "nobody"}) == []
    with engine.connect() as conn:
        assert not conn.in_transaction()
        eventstore.load_stream(conn, "acme", "d-1")
        assert conn.in_transaction()  # begun by the read, as Connection.execute's autobegin would
        if engine.dialect.name == "sqlite":  # ... and on SQLite the write lock was taken before the read
            other = sqlite3.connect(engine.url.database, timeout=0)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
        eventstore.append(conn, "dataset", [_event("d-3")], expected_version=0)
        assert [ev.subject for ev in eventstore.load_stream(conn, "acme", "d-3")] == ["d-3"]  # its own write
        conn.rollback()
    with engine.connect() as conn:  # an append first on a fresh connection begins the transaction too
        eventstore.append(conn, "dataset", [_event("d-4")], expected_version=0)
        assert conn.in_transaction()
        conn.commit()
    with reader(engine).connect() as conn:
        assert eventstore.load_stream(conn, "acme", "d-3") == []  # rolled back with the transaction
        assert [ev.subject for ev in eventstore.load_stream(conn, "acme", "d-4")] == ["d-4"]
        assert eventstore.tenant_position(conn, "acme") == eventstore.stream_position(conn, "acme", "d-4")
        assert eventstore.tenant_position(conn, "nobody") == 0


def test_direct_reads_of_many_rows_give_every_value_and_the_order_exactly(engine: Engine) -> None:
    """On SQLite a DirectRead of integer, string and float columns comes back packed as one JSON text (two
    steps of the driver instead of one per row: see services/common/store/direct.py); on both stores the
    rows must be exactly those of Connection.execute, in the statement's order: floats to the last bit
    (JSON numbers would round them to 15 digits), extreme integers, NULLs, quotes and non-ASCII text, an
    empty result, and an ORDER BY in a subquery under a join. A result longer than SQLite's length limit,
    and values not of their column's kind, are read row by row instead."""
    import math
    import random
    import struct

    from typing import Any

    from sqlalchemy import (BigInteger, Column, Float, Integer, LargeBinary, MetaData, String, Table, bindparam, true,
                            type_coerce)

    from services.common.store.direct import DirectRead

    rng = random.Random(7)
    probe = Table("direct_read_probe", MetaData(), Column("n", Integer, primary_key=True),
                  Column("big", BigInteger), Column("x", Float), Column("s", String(64)), Column("b", LargeBinary))
    floats = [0.1 + 0.2, 1 / 3, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -1.5e-300, 1e16 + 2,
              math.pi * 1e200, -0.0, 123456789.00000001, float("inf"), float("-inf"), None]
    floats += [rng.uniform(-1e6, 1e6) for _ in range(150)] + [rng.random() * 10.0 ** rng.randint(-300, 300)
                                                            for _ in range(150)]
    texts = ["", "a'b\"c", "tab\tnew\nline", "ünïcødé ☃ 𝄞", "\\back\\slash", None, "[1,2]", "null"]
    blobs = [b"", None, b"\x00\xff", bytes(range(256)) * 8, b"[1]"]
    values = [{"n": i, "big": rng.choice([2**63 - 1, -2**63, 0, None, rng.randint(-2**62, 2**62)]), "x": x,
               "s": texts[i % len(texts)], "b": blobs[i % len(blobs)]} for i, x in enumerate(floats)]
    rng.shuffle(values)
    probe.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(probe.insert(), values)
        c = probe.c
        ordered = select(c.x, c.n, c.big, c.s).where(c.n >= bindparam("low")).order_by(c.big.desc(), c.n)
        inner = ordered.subquery("probe_page")
        joined = select(func.count().over().label("total"), *inner.c) \
            .select_from(select(func.max(c.n).label("top")).subquery("top").outerjoin(inner, true()))
        empty = select(c.x, c.s).where(c.n < bindparam("low"))
        summed = select(func.sum(c.x).label("total"), func.count().label("rows")).where(c.x.between(-1e6, 1e6))
        with_bytes = select(c.n, c.b, c.x).where(c.n >= bindparam("low")).order_by(c.n.desc())

        def same(a: object, b: object) -> bool:  # floats bit for bit (struct tells -0.0 from 0.0)
            if isinstance(a, float) and isinstance(b, float):
                return struct.pack("<d", a) == struct.pack("<d", b)
            return type(a) is type(b) and a == b

        with reader(engine).connect() as conn:
            for statement, params in [(ordered, {"low": 0}), (joined, {"low": 3}), (empty, {"low": 0}),
                                      (summed, {}), (with_bytes, {"low": 0})]:
                want = [tuple(r) for r in conn.execute(statement, params).all()]
                got = list(DirectRead(statement).rows(conn, params))
                assert len(got) == len(want), statement
                for g, w in zip(got, want):
                    assert len(g) == len(w) and all(same(x, y) for x, y in zip(g, w)), (g, w)
            assert len(DirectRead(ordered).rows(conn, {"low": 0})) == len(values)
        if engine.dialect.name == "sqlite":
            packed = [DirectRead(s)._for(engine.dialect).packed is not None  # the reads above went packed...
                      for s in (ordered, joined, empty, summed, with_bytes)]
            assert packed == [True, True, True, True, False]  # ...but the one with bytes (row by row)
            # values not of their column's declared kind (SQLite stores what it is given: a float through an
            # Integer column too), labels a subquery cannot carry, a caller's parameter named as SQLAlchemy
            # names its own: the read notices and goes row by row, so each value is exactly the driver's
            with engine.begin() as conn:
                conn.exec_driver_sql("INSERT INTO direct_read_probe (n, big, x, s, b) VALUES "
                                     "(10000, NULL, 'not a float', X'00ff', 'text in bytes'), "
                                     "(10001, 1234567.123456789, 2.5, 'x', NULL), (10002, 9e999, 3.5, 'y', NULL)")
            odd = [select(c.n, c.big, c.x, c.s).where(c.n >= bindparam("low")).order_by(c.n),
                   select(func.coalesce(c.x, 0).label("x"), c.n).where(c.n >= bindparam("low")).order_by(c.n),
                   select(func.max(c.n, 0.1 + 0.2, type_=Integer).label("m")).where(c.n >= bindparam("low"))
                   .order_by(c.n),
                   select(type_coerce(c.x * 10.000000000000001, String).label("t"), c.n)
                   .where(c.n >= bindparam("low")).order_by(c.n),
                   select(c.n.label("a"), c.s.label("a")).where(c.n >= bindparam("low")).order_by(c.n),
                   select(c.n, c.x).where(c.n >= bindparam("param_1")).order_by(c.n)]

            def check(conn: Any, statement: Any, low: int) -> None:
                key = "param_1" if "param_1" in str(statement) else "low"
                want = [tuple(r) for r in conn.execute(statement, {key: low}).all()]
                got = list(DirectRead(statement).rows(conn, {key: low}))
                assert len(got) == len(want) and all(same(x, y) for g, w in zip(got, want) for x, y in zip(g, w)), \
                    (statement, got[:3], want[:3])

            with reader(engine).connect() as conn:
                for statement in odd:
                    check(conn, statement, 9000)
                    check(conn, statement, 0)  # a NULL x: an integer 0; n = 0: 0.30000000000000004 (JSON: 0.3)
            for writer in (False, True):  # on a reader, and inside a writer's transaction
                with (engine.begin() if writer else reader(engine).connect()) as conn:
                    driver = conn.connection.driver_connection  # a result longer than SQLite makes one text of
                    was = driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 8192)  # type: ignore[union-attr]
                    try:
                        check(conn, with_bytes, 0)
                        check(conn, ordered, 0)
                        if writer:  # the transaction goes on after the packed read failed, and commits
                            conn.exec_driver_sql("INSERT INTO direct_read_probe (n, x) VALUES (20000, 1.5)")
                    finally:
                        driver.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, was)  # type: ignore[union-attr]
            with reader(engine).connect() as conn:
                assert conn.execute(select(c.x).where(c.n == 20000)).scalar() == 1.5
    finally:
        probe.drop(engine)


def test_direct_reads_fail_as_connection_execute_fails(engine: Engine) -> None:
    """The same bad statement or value raises the same exception through a DirectRead as through
    SQLAlchemy's execute (a driver's error wrapped in DBAPIError, a value the driver refuses as it is),
    and the connection stays usable afterwards. (DirectRead hands errors to SQLAlchemy's private
    handler: this also pins that handler's behaviour for the installed SQLAlchemy.)"""
    from sqlalchemy import bindparam, column, exc, table

    from services.common.store.direct import DirectRead

    e = stored_events.c
    cases = [(select(table("no_such_table", column("x")).c.x), {}),
             (select(e.seq).where(e.stream_version == bindparam("v")), {"v": 2**70})]
    for statement, params in cases:
        with reader(engine).connect() as conn:
            with pytest.raises(Exception) as through_sqlalchemy:
                conn.execute(statement, params).all()
        with reader(engine).connect() as conn:
            with pytest.raises(Exception) as direct:
                DirectRead(statement).rows(conn, params)
            assert type(direct.value) is type(through_sqlalchemy.value), (direct.value, through_sqlalchemy.value)
            assert eventstore.tenant_position(conn, "acme") == 0  # the connection still answers
    assert issubclass(type(direct.value), Exception)
    with reader(engine).connect() as conn, pytest.raises(exc.DBAPIError):
        DirectRead(cases[0][0]).rows(conn, {})


def test_a_pipelined_block_writes_reads_and_fails_as_statements_one_by_one_do(engine: Engine) -> None:
    """``pipelined`` (PostgreSQL: one round trip for the block's statements; SQLite: nothing) changes when a
    statement's answer arrives, not what it is: a read in the block sees the block's inserts, the block
    commits with its transaction, and a conflicting insert comes out as SQLAlchemy's IntegrityError (at the
    next read or the block's end) and leaves nothing once the transaction rolls back; the connection serves
    the next transaction."""
    from sqlalchemy import exc

    from services.common.store.direct import pipelined

    with engine.begin() as conn:
        with pipelined(conn):
            eventstore.append(conn, "dataset", [_event("pipe-1"), _event("pipe-1")], expected_version=0)
            position = eventstore.stream_position(conn, "acme", "pipe-1")
        assert position > 0
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "pipe-1") == 2
        assert eventstore.stream_position(conn, "acme", "pipe-1") == position
    # SQLite answers each statement as it runs (the append's own ConcurrencyConflict); PostgreSQL later
    expected = ConcurrencyConflict if engine.dialect.name == "sqlite" else exc.IntegrityError
    for read_in_block in (True, False):
        with pytest.raises(expected), engine.begin() as conn:
            with pipelined(conn):
                eventstore.append(conn, "dataset", [_event("pipe-2")], expected_version=0)
                eventstore.append(conn, "dataset", [_event("pipe-1")], expected_version=1)  # version 2 is taken
                if read_in_block:
                    eventstore.stream_position(conn, "acme", "pipe-2")
        with engine.connect() as conn:
            assert eventstore.stream_version(conn, "pipe-2") == 0  # rolled back with the conflict
            assert eventstore.stream_version(conn, "pipe-1") == 2
    with engine.begin() as conn, pipelined(conn):
        eventstore.append(conn, "dataset", [_event("pipe-3")], expected_version=0)
    with engine.connect() as conn:
        assert eventstore.stream_version(conn, "pipe-3") == 1
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 3


def test_a_one_statement_block_stores_every_row_of_it_or_none(engine: Engine) -> None:
    """``one_statement`` on ``autocommit(engine)`` (PostgreSQL): the block's inserts into several tables go out
    when it ends, as one statement that is its own transaction. Nothing is visible before the block ends;
    everything is after it, committed with no COMMIT; the statement answers the largest key the events got;
    a duplicate key in any of its rows stores none of them and names the table; a block that raises sends
    nothing; a read inside the block is refused. On SQLite there is no such engine, and the block inserts
    as it goes in the caller's transaction."""
    from sqlalchemy import exc

    from services.common.idempotency import claim_row
    from services.common.store.direct import insert_rows
    from services.common.store.one_statement import MAX_PARAMETERS, autocommit, duplicate_in, one_statement
    from services.common.store.schema import unique_names

    def versions(*streams: str) -> list[int]:
        with reader(engine).connect() as conn:
            return [eventstore.stream_version(conn, s) for s in streams]

    def outbox_rows() -> int:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(outbox)).scalar_one()

    at_once = autocommit(engine)
    if engine.dialect.name == "sqlite":
        assert at_once is None
        with engine.begin() as conn, one_statement(conn) as written:
            eventstore.append(conn, "dataset", [_event("one-1")], expected_version=0)
            assert eventstore.stream_version(conn, "one-1") == 1  # inserted as it went
        assert not written.sent and written.max_key(stored_events) is None and versions("one-1") == [1]
        return
    assert at_once is not None and autocommit(engine) is at_once
    claim = claim_row("acme", "test", "request-1", "one-1")
    with at_once.connect() as conn:
        with one_statement(conn) as written:
            eventstore.append(conn, "dataset", [_event("one-1"), _event("one-1")], expected_version=0)
            insert_rows(conn, unique_names, [claim])
            with pytest.raises(ValueError, match="second insert into stored_events"):  # keys in no set order
                eventstore.append(conn, "dataset", [_event("one-2")], expected_version=0)
            with pytest.raises(RuntimeError, match="only insert_rows"):
                eventstore.stream_version(conn, "one-1")
            with pytest.raises(RuntimeError, match="do not nest"), one_statement(conn):
                pass
            assert versions("one-1", "one-2") == [0, 0] and outbox_rows() == 0  # nothing sent yet
        assert written.sent
    assert versions("one-1", "one-2") == [2, 0] and outbox_rows() == 2  # committed: no COMMIT was sent
    with engine.connect() as conn:
        newest = conn.execute(select(func.max(stored_events.c.seq))).scalar_one()
        assert conn.execute(select(func.count()).select_from(unique_names)).scalar_one() == 1
    assert written.max_key(stored_events) == newest and written.max_key(outbox) is None
    # a duplicate key in the last rows: none of the block's rows is stored, the error names the table
    with pytest.raises(exc.IntegrityError) as failed, at_once.connect() as conn, one_statement(conn):
        eventstore.append(conn, "dataset", [_event("one-3")], expected_version=0)  # would land on its own
        insert_rows(conn, unique_names, [claim])  # taken
    assert duplicate_in(failed.value) == "unique_names"
    with pytest.raises(exc.IntegrityError) as failed, at_once.connect() as conn, one_statement(conn):
        insert_rows(conn, unique_names, [claim_row("acme", "test", "request-3", "one-1")])  # would land alone
        eventstore.append(conn, "dataset", [_event("one-1")], expected_version=1)  # version 2 is taken
    assert duplicate_in(failed.value) == "stored_events"
    assert duplicate_in(ValueError("not a statement's error")) is None
    # a block that raises, or asks for more values than one statement takes, sends nothing
    with pytest.raises(KeyError), at_once.connect() as conn, one_statement(conn):
        eventstore.append(conn, "dataset", [_event("one-4")], expected_version=0)
        raise KeyError("the caller's own failure")
    too_many = MAX_PARAMETERS // 4 + 1  # unique_names rows have 4 columns
    with pytest.raises(ValueError, match="values in one statement"), at_once.connect() as conn, \
            one_statement(conn):
        eventstore.append(conn, "dataset", [_event("one-5")], expected_version=0)
        insert_rows(conn, unique_names, [claim_row("acme", "test", f"r-{i}", "a") for i in range(too_many)])
    assert versions("one-1", "one-2", "one-3", "one-4", "one-5") == [2, 0, 0, 0, 0] and outbox_rows() == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(unique_names)).scalar_one() == 1
    # the connections it used serve the next block
    with at_once.connect() as conn, one_statement(conn) as written:
        eventstore.append(conn, "dataset", [_event("one-6")], expected_version=0)
    assert versions("one-6") == [1] and written.max_key(stored_events) > newest


def test_direct_reads_refuse_result_columns_that_need_converting(engine: Engine) -> None:
    """A result column SQLAlchemy would convert (a Decimal) cannot be read raw: refused before anything is sent."""
    from decimal import Decimal

    from sqlalchemy import Numeric, cast, literal

    from services.common.store.direct import DirectRead

    with reader(engine).connect() as conn, pytest.raises(TypeError, match="processing"):
        DirectRead(select(cast(literal(Decimal("1.5")), Numeric(10, 2)))).rows(conn, {})


def test_direct_statements_convert_parameters_as_sqlalchemy_does(engine: Engine) -> None:
    """Values that need SQLAlchemy's conversion on the way in (a Decimal for a Float column: sqlite3 takes no
    Decimal; a pickled value) land the same through ``insert_rows``, a ``DirectWrite`` and a ``DirectRead``'s
    parameters as through ``Connection.execute``; without the conversions sqlite3 refuses both values."""
    from decimal import Decimal

    from sqlalchemy import Column, Float, Integer, MetaData, PickleType, Table, bindparam, insert, update

    from services.common.store.direct import DirectRead, DirectWrite, insert_rows

    probe = Table("direct_probe", MetaData(), Column("id", Integer, primary_key=True), Column("x", Float),
                  Column("blob", PickleType))
    probe.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(probe), [{"id": 1, "x": Decimal("1.5"), "blob": {"a": 1}}])
            insert_rows(conn, probe, [{"id": 2, "x": Decimal("1.5"), "blob": {"a": 1}}])
            insert_rows(conn, probe, [{"id": 3, "x": None, "blob": None}])  # columns of NULLs only
        with engine.connect() as conn:
            rows = conn.execute(select(probe.c.x, probe.c.blob).order_by(probe.c.id)).all()
            assert [tuple(r) for r in rows] == [(1.5, {"a": 1}), (1.5, {"a": 1}), (None, None)]
            assert all(type(r.x) is float for r in rows[:2])
        with engine.begin() as conn:
            matched = DirectWrite(update(probe).where(probe.c.id == bindparam("key"))
                                  .values(x=bindparam("x"), blob=bindparam("blob"))).run(
                conn, {"key": 2, "x": Decimal("2.25"), "blob": {"b": [2]}})
            assert matched == 1
        with reader(engine).connect() as conn:
            assert tuple(conn.execute(select(probe.c.x, probe.c.blob).where(probe.c.id == 2)).one()) == \
                (2.25, {"b": [2]})
            by_blob = DirectRead(select(probe.c.id).where(probe.c.blob == bindparam("blob", type_=PickleType)))
            assert by_blob.rows(conn, {"blob": {"b": [2]}}) == [(2,)]
    finally:
        probe.drop(engine)


def test_insert_rows_never_truncates_and_refuses_to_skip_python_defaults(engine: Engine) -> None:
    """An overlong string is refused where the store checks lengths (PostgreSQL) and kept whole where it
    does not (SQLite), never cut; a column whose default only SQLAlchemy would fill in (``outbox.attempts``)
    must be given."""
    from sqlalchemy import exc

    from services.common.store.direct import insert_rows

    row = dict(event_id="e" * 100, tenant_id="acme", stream_type="dataset", stream_id="s-1", stream_version=1,
               event_type="t", payload=b"p", recorded_at_ms=1)
    try:
        with engine.begin() as conn:
            insert_rows(conn, stored_events, [row])
    except exc.DBAPIError as error:
        assert engine.dialect.name == "postgresql" and "too long" in str(error)
    with engine.connect() as conn:
        stored = conn.execute(select(stored_events.c.event_id)).scalars().all()
    assert stored == ([] if engine.dialect.name == "postgresql" else ["e" * 100])

    queued = dict(event_id="q-1", topic="t", key="k", payload=b"p", created_at_ms=1)
    with pytest.raises(TypeError, match="attempts"), engine.begin() as conn:
        insert_rows(conn, outbox, [queued])
    with engine.begin() as conn:
        insert_rows(conn, outbox, [{**queued, "attempts": 0}, {**queued, "event_id": "q-2", "attempts": 0}])
    with engine.connect() as conn:
        assert conn.execute(select(outbox.c.event_id).order_by(outbox.c.seq)).scalars().all() == ["q-1", "q-2"]


def test_a_direct_read_on_a_dropped_connection_fails_as_sqlalchemy_does_and_the_pool_recovers(
        postgres_engine: Engine) -> None:
    """(PostgreSQL.) The server kills the connection a direct read is about to use: the read raises
    SQLAlchemy's DBAPIError marked as invalidated (what the loops' supervision retries), and the next
    checkout gets a working connection."""
    from sqlalchemy import exc

    engine = postgres_engine
    admin = create_engine(engine.url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT",
                          poolclass=NullPool)
    with reader(engine).connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
        with admin.connect() as a:
            assert a.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        with pytest.raises(exc.DBAPIError) as raised:
            eventstore.load_stream(conn, "acme", "d-1")
        assert raised.value.connection_invalidated
    admin.dispose()
    with reader(engine).connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != pid
        assert eventstore.load_stream(conn, "acme", "d-1") == []


def test_a_positioned_page_is_one_snapshot_of_the_tenants_rows_and_position(engine: Engine) -> None:
    """``positioned_page``: the tenant's rows in keyset pages with its own event-store position (also on an
    empty page), filters applied and signed into the token, nothing of another tenant, and a token
    refused for another tenant or another filter."""
    from sqlalchemy import insert

    from services.common import queries
    from services.common.errors import InvalidArgument
    from services.common.store.schema import training_job_view

    def job(tenant: str, n: int, state: int) -> dict:
        return dict(tenant_id=tenant, job_id=f"{tenant}-{n:02d}", name=f"j{n}", state=state, gpu_pool="a", gpus=1,
                    priority=0, attempt=0, method=1, base_model_id="m", dataset_version_id="v", step=0,
                    total_steps=0, loss=0.5, epsilon_spent=0.0, gpu_hours=1.0, retry_pending=0, failures=0,
                    state_version=1, started_at_ms=0, month="2026-12", reason="", created_at_ms=1000 + n,
                    updated_at_ms=1000 + n)

    with engine.begin() as conn:
        conn.execute(insert(training_job_view), [job("acme", n, 2 if n % 3 else 5) for n in range(11)]
                     + [job("other", n, 2) for n in range(4)])
        eventstore.append(conn, "dataset", [_event("d-1")], expected_version=0)
        eventstore.append(conn, "dataset", [_event("d-2", tenant="other")], expected_version=0)

    def pages(tenant: str, size: int, equal: dict, filters: dict) -> tuple[list[list[str]], set[int]]:
        seen, at, token = [], set(), ""
        with reader(engine).connect() as conn:
            while True:
                rows, token, position = queries.positioned_page(
                    engine, training_job_view, ("created_at_ms", "job_id"), tenant, size, token, equal=equal,
                    filters=filters, conn=conn)
                seen.append([r["job_id"] for r in rows])
                at.add(position)
                assert all(r["tenant_id"] == tenant for r in rows) and all(r["loss"] == 0.5 for r in rows)
                if not token:
                    return seen, at

    with reader(engine).connect() as conn:
        acme_at = eventstore.tenant_position(conn, "acme")
        other_at = eventstore.tenant_position(conn, "other")
    assert acme_at and other_at and acme_at != other_at
    everything, at = pages("acme", 4, {}, {"state": 0})
    assert [len(p) for p in everything] == [4, 4, 3] and at == {acme_at}
    assert sum(everything, []) == [f"acme-{n:02d}" for n in range(11)]
    filtered, at = pages("acme", 2, {"state": 5}, {"state": 5})
    assert sum(filtered, []) == ["acme-00", "acme-03", "acme-06", "acme-09"] and at == {acme_at}
    empty, at = pages("acme", 2, {"state": 7}, {"state": 7})
    assert empty == [[]] and at == {acme_at}, "an empty page still carries the tenant's position"
    assert pages("nobody", 5, {}, {"state": 0}) == ([[]], {0})
    assert sum(pages("other", 50, {}, {"state": 0})[0], []) == [f"other-{n:02d}" for n in range(4)]
    with reader(engine).connect() as conn:
        _, token, _ = queries.positioned_page(engine, training_job_view, ("created_at_ms", "job_id"), "acme", 2, "",
                                              equal={"state": 5}, filters={"state": 5}, conn=conn)
        for tenant, equal, filters in (("other", {"state": 5}, {"state": 5}), ("acme", {}, {"state": 0})):
            with pytest.raises(InvalidArgument):
                queries.positioned_page(engine, training_job_view, ("created_at_ms", "job_id"), tenant, 2, token,
                                        equal=equal, filters=filters, conn=conn)
        with pytest.raises(ValueError, match="signed"):
            queries.positioned_page(engine, training_job_view, ("created_at_ms", "job_id"), "acme", 2, "",
                                    equal={"state": 5}, filters={"state": 0}, conn=conn)
    if engine.dialect.name == "sqlite":  # the job list's page comes back packed (one JSON text, not a step a row)
        for after in (False, True):
            statement = queries._positioned(training_job_view, ("created_at_ms", "job_id"), after, ("state",))
            assert statement._for(engine.dialect).packed is not None


def test_after_a_server_restart_one_failed_direct_read_renews_every_older_pooled_connection(
        postgres_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """(PostgreSQL.) Every pooled connection dies at once (a restart) and reads come within the ping's idle
    window: the first read fails, as SQLAlchemy's own execute would, and the pool then replaces every
    connection older than that failure, so the next reads all get live ones (not one failure each)."""
    from sqlalchemy import exc

    from services.common.store import engine as engine_module

    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 3600.0)  # however slow the machine: no ping saves them
    engine = postgres_engine
    r = reader(engine)
    held = [r.connect() for _ in range(4)]
    pids = {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in held}
    for c in held:
        c.close()
    admin = create_engine(engine.url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT",
                          poolclass=NullPool)
    with admin.connect() as a:
        assert a.execute(text("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE pid = ANY(:pids)) t"), {"pids": list(pids)}).scalar() == 4
    admin.dispose()
    failures = 0
    for _ in range(6):
        try:
            with r.connect() as conn:
                eventstore.load_stream(conn, "acme", "d-1")
        except exc.DBAPIError as error:
            assert error.connection_invalidated
            failures += 1
    assert failures == 1


def _bus_keys(bus: object, expected: int) -> list[bytes]:
    """The keys of the dataset events on ``bus``, in the order one partition at a time holds them."""
    sub = bus.subscribe(f"check-{time.monotonic_ns()}", [DATASET_EVENTS], from_beginning=True)  # type: ignore[attr-defined]
    seen: list = []
    for _ in range(50):
        seen += sub.poll(max_records=1000, timeout=0.2)
        if len(seen) >= expected:
            break
    sub.close()
    return [r.key for r in seen]


def test_a_published_batch_leaves_the_outbox_and_no_other_row_does(engine: Engine, tmp_path: Path) -> None:
    """A batch of 600 (two deletes: 512 and 88 rows, padded to 128) of 700 pending rows: exactly those 600 leave
    the outbox once the bus has them; the other 100 wait for the next batch; the event store keeps all 700."""
    from services.common.bus import open_bus
    from services.common.outbox import OutboxRelay

    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")
    with engine.begin() as conn:
        eventstore.append_new_streams(conn, "dataset", [_event(f"b-{i:03d}") for i in range(700)])
    relay = OutboxRelay(engine, bus, batch_size=600)
    assert relay.publish_pending() == 600
    with engine.connect() as conn:
        left = conn.execute(select(outbox.c.key).order_by(outbox.c.seq)).scalars().all()
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == 700
    assert left == [f"b-{i:03d}" for i in range(600, 700)] and relay.pending() == 100
    assert relay.publish_pending() == 100 and relay.pending() == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0
    assert sorted(_bus_keys(bus, 700)) == [f"b-{i:03d}".encode() for i in range(700)]


def test_rows_an_older_relay_marked_published_are_swept_and_pending_rows_are_kept(
        engine: Engine, tmp_path: Path) -> None:
    """Before this version the relay marked rows published and kept them. A relay deletes those a batch at a
    time when it has nothing to publish (its loop), never a row still pending, and publishes the pending ones."""
    from sqlalchemy import update

    from services.common.bus import open_bus
    from services.common.outbox import SWEEP_BATCH, OutboxRelay

    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")
    old = 2 * SWEEP_BATCH + 7
    with engine.begin() as conn:
        eventstore.append_new_streams(conn, "dataset", [_event(f"o-{i:04d}") for i in range(old)])
        conn.execute(update(outbox).values(published_at_ms=1))  # as the old relay left them
        eventstore.append_new_streams(conn, "dataset", [_event(f"p-{i}") for i in range(3)])
    relay = OutboxRelay(engine, bus)
    assert relay.sweep_published(limit=5) == 5
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == old - 5 + 3
    assert relay.pending() == 3

    stop = threading.Event()
    loop = threading.Thread(target=relay.run, args=(stop,), kwargs={"idle_sleep": 0.01})
    loop.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(outbox)).scalar() == 0:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        loop.join(timeout=30)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == old + 3
    assert sorted(_bus_keys(bus, 3)) == [b"p-0", b"p-1", b"p-2"]  # the swept rows were not sent again
    assert relay.sweep_published() == 0


def test_a_relay_that_deletes_its_batch_late_deletes_no_newer_row(engine: Engine, tmp_path: Path) -> None:
    """Relay A stalls inside its publish past its lease. Meanwhile relay B takes the lapsed lease, publishes
    and deletes the same row, and a newer event is stored: on SQLite it gets the deleted row's ``seq`` again
    (the highest left plus one). A then deletes its batch, as it was written to: by ``seq`` that would take
    the newer row, whose event would never be published; by event id it stays, and B sends it."""
    from sqlalchemy import update

    from services.common.bus import open_bus
    from services.common.outbox import OutboxRelay
    from services.common.store.schema import relay_leases

    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")
    seqs: list[int] = []

    class StallingBus:
        """The real bus; its first publish returns only after the others' steps above (A's stall)."""

        def __init__(self) -> None:
            self.stalled = False

        def publish(self, messages: list, timeout: float = 30.0) -> None:
            bus.publish(messages, timeout=timeout)
            if self.stalled:
                return
            self.stalled = True
            with engine.begin() as conn:  # A's lease lapsed while it stalled
                conn.execute(update(relay_leases).where(relay_leases.c.name == "outbox").values(lease_until_ms=0))
            assert second.publish_pending() == 1  # B sends the same row again and deletes it
            with engine.begin() as conn:
                eventstore.append(conn, "dataset", [_event("late-2")], expected_version=0)
            with engine.connect() as conn:
                seqs.append(conn.execute(select(outbox.c.seq)).scalar_one())

    first, second = OutboxRelay(engine, StallingBus()), OutboxRelay(engine, bus)  # type: ignore[arg-type]
    with engine.begin() as conn:
        eventstore.append(conn, "dataset", [_event("late-1")], expected_version=0)
    with engine.connect() as conn:
        seqs.append(conn.execute(select(outbox.c.seq)).scalar_one())
    assert first.publish_pending() == 1  # its batch, deleted after the stall
    if engine.dialect.name == "sqlite":
        assert seqs[1] == seqs[0]  # the number came back: the case this guards against
    assert second.pending() == 1, "the newer, unpublished row was deleted"
    assert second.publish_pending() == 1 and second.pending() == 0
    assert sorted(_bus_keys(bus, 3)) == [b"late-1", b"late-1", b"late-2"]  # late-1 twice, as consumers allow


def test_only_the_lease_holder_sweeps_and_it_looks_again_later(engine: Engine, tmp_path: Path) -> None:
    """Two relays beside rows an older relay marked: the one without the lease sweeps nothing; the holder
    sweeps until a sweep finds fewer than a batch, then not again until ``RESWEEP_S`` later, when rows
    marked meanwhile (an older relay still running) go too."""
    from sqlalchemy import update

    from services.common import outbox as relay_module
    from services.common.bus import open_bus
    from services.common.outbox import OutboxRelay

    bus = open_bus(f"sqlite:///{tmp_path}/bus.db")

    def marked(prefix: str, n: int) -> None:
        with engine.begin() as conn:
            eventstore.append_new_streams(conn, "dataset", [_event(f"{prefix}-{i}") for i in range(n)])
            conn.execute(update(outbox).where(outbox.c.published_at_ms.is_(None)).values(published_at_ms=1))

    def left() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(outbox)).scalar_one())

    marked("old", 5)
    holder, other = OutboxRelay(engine, bus), OutboxRelay(engine, bus)
    assert holder.publish_pending() == 0 and other.publish_pending() == 0  # the holder took the lease first
    assert other._sweep_if_due() == 0 and left() == 5
    assert holder._sweep_if_due() == 5 and left() == 0
    marked("later", 3)
    assert holder._sweep_if_due() == 0 and left() == 3  # not due yet
    holder._swept_at -= relay_module.RESWEEP_S
    assert holder._sweep_if_due() == 3 and left() == 0
