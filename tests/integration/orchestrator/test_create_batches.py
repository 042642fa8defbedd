"""Creates batched into one transaction (group commit) answer exactly as creates written one by one, on
SQLite and PostgreSQL: each caller gets its own job and position, each job's events, outbox rows and view
row are written once, tenants stay apart inside a batch, and a batch that cannot be written (two creates
of one request id) writes nothing and lets each create answer on its own.

A batch is made deterministically: the first create leads and is held at the event store's lock (a
SQLite write transaction, or PostgreSQL's ``LOCK TABLE``, from another connection) while the others
queue; then the lock is let go. On SQLite the leader waits for the write lock before it takes its
batch, so the others go in it; on PostgreSQL it waits at its insert, and they form the next batch.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from privtune.v1 import training_service_pb2 as pb
from services.common import positions
from services.common.errors import InvalidArgument, NotFound
from services.common.identity import Caller
from services.common.store.engine import dispose, open_store
from services.orchestrator.application import CREATE_BATCH, TrainingJobApplication
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator_fixtures import job_request, register_version
from tests.stores import fresh_store_url
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

ACME = Caller(tenant_id="acme", actor="alice")
BETA = Caller(tenant_id="beta", actor="bob")


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, str]]:
    engine = open_store(fresh_store_url(request, request.param, tmp_path))
    yield engine, str(tmp_path / "storage")
    dispose(engine)


def _app(engine: Engine, tmp_path: Path, storage: str, batch: int = 8) -> TrainingJobApplication:
    make_models(tmp_path / "models")
    return TrainingJobApplication(engine, OrchestratorSettings(
        models_dir=tmp_path / "models", storage_uri=storage, policies_dir=tmp_path / "no-policies",
        create_batch=batch))


@contextlib.contextmanager
def event_store_held(engine: Engine) -> Iterator[Callable[[str, dict], None]]:
    """Another connection keeps every writer of ``engine`` from inserting events until the block ends; it
    yields a function that runs a statement in that connection's transaction, committed at the end."""
    if engine.dialect.name == "sqlite":
        holder = sqlite3.connect(make_url(engine.url).database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # SQLite's write lock: the leader waits in its own BEGIN IMMEDIATE
        try:
            yield lambda sql, params: holder.execute(sql, params) and None
        finally:
            holder.commit()
            holder.close()
        return
    with engine.connect() as conn, conn.begin():
        conn.execute(text("LOCK TABLE stored_events IN SHARE ROW EXCLUSIVE MODE"))  # reads go on; inserts wait
        yield lambda sql, params: conn.execute(text(sql), params) and None


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.005)


def _batched(app: TrainingJobApplication, engine: Engine, leader: tuple[Caller, pb.CreateTrainingJobRequest],
             followers: list[tuple[Caller, pb.CreateTrainingJobRequest]],
             meanwhile: Callable[[Callable[[str, dict], None]], None] = lambda run: None) -> list[Any]:
    """Create ``leader``'s job, held at the lock, and ``followers``' behind it; every outcome (or error), in order.
    ``meanwhile`` runs statements in the holder's transaction, committed before the creates go on."""
    outcomes: list[Any] = [None] * (1 + len(followers))

    def create(i: int, caller: Caller, request: pb.CreateTrainingJobRequest) -> None:
        try:
            outcomes[i] = app.create(caller, request)
        except Exception as error:  # noqa: BLE001 - recorded for the assertions
            outcomes[i] = error

    threads = []
    sqlite = engine.dialect.name == "sqlite"
    before = app.new_jobs.batches
    with event_store_held(engine) as run:
        threads.append(threading.Thread(target=create, args=(0, *leader)))
        threads[0].start()
        if sqlite:  # the leader waits for the write lock before it takes its batch: the others join it
            _until(lambda: app.new_jobs.leading, "the first create leads")
        else:  # the leader took its batch (itself) and waits at the insert: the others queue for the next
            _until(lambda: app.new_jobs.batches == before + 1, "the first create leads a batch of its own")
        for i, (caller, request) in enumerate(followers, start=1):
            threads.append(threading.Thread(target=create, args=(i, caller, request)))
            threads[-1].start()
        _until(lambda: app.new_jobs.waiting() == len(followers) + sqlite, "the other creates queue")
        meanwhile(run)
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads)
    return outcomes


def _events(engine: Engine, job_id: str) -> list[tuple[str, int, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(  # type: ignore[misc]
            "SELECT tenant_id, stream_version, event_type FROM stored_events WHERE stream_id = :s "
            "ORDER BY stream_version"), {"s": job_id})]


def _orphan_outbox_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox o WHERE NOT EXISTS "
                                 "(SELECT 1 FROM stored_events e WHERE e.event_id = o.event_id)")).scalar_one()


def test_a_batch_of_two_tenants_creates_each_job_once_for_its_own_tenant(store: tuple[Engine, str],
                                                                        tmp_path: Path) -> None:
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    versions = {c.tenant_id: register_version(engine, storage, tenant=c.tenant_id) for c in (ACME, BETA)}
    callers = [ACME, BETA, ACME, BETA, ACME, BETA]
    requests = [(c, job_request(versions[c.tenant_id], name=f"job-{i}")) for i, c in enumerate(callers)]
    outcomes = _batched(app, engine, (ACME, job_request(versions["acme"], name="leader")), requests)

    expected = (1, 7) if engine.dialect.name == "sqlite" else (2, 6)  # see _batched
    assert (app.new_jobs.batches, app.new_jobs.largest) == expected, "the creates were not batched as held"
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    jobs = [(caller, state, position) for (caller, _), (state, position) in zip([(ACME, None)] + requests, outcomes)]
    assert len({state.job_id for _, state, _ in jobs}) == 7
    with engine.connect() as conn:
        outboxed = {r[0] for r in conn.execute(text("SELECT event_id FROM outbox"))}
    for caller, state, position in jobs:
        assert state.tenant_id == caller.tenant_id and state.state == pb.TRAINING_JOB_STATE_QUEUED
        stored = _events(engine, state.job_id)
        assert stored == [(caller.tenant_id, 1, "privtune.v1.TrainingRequested"),
                          (caller.tenant_id, 2, "privtune.v1.TrainingQueued")], stored
        assert app.get(caller, state.job_id).version == state.version == 2
        other = BETA if caller is ACME else ACME
        with pytest.raises(NotFound):
            app.get(other, state.job_id)  # a batch does not make a job another tenant's
        with engine.connect() as conn:
            newest = conn.execute(text("SELECT max(seq) FROM stored_events WHERE stream_id = :s"),
                                  {"s": state.job_id}).scalar_one()
        assert positions.unseal(engine, caller.tenant_id, position) == newest  # the job's own position
        rows, _, _ = app.list(caller, page_size=100, min_position=position)  # read your own write
        assert state.job_id in {r["job_id"] for r in rows}
        assert {r["job_id"] for r in app.list(other, page_size=100)[0]}.isdisjoint({state.job_id})
        with pytest.raises(InvalidArgument):
            positions.unseal(engine, other.tenant_id, position)  # sealed for its own tenant only
    with engine.connect() as conn:
        job_events = {r[0] for r in conn.execute(text(
            "SELECT event_id FROM stored_events WHERE stream_type = 'training_job'"))}
    assert job_events <= outboxed, "an event of the batch was stored without its outbox row"
    assert _orphan_outbox_rows(engine) == 0


def test_request_ids_claimed_in_the_batch_or_meanwhile_are_answered_alone_and_the_rest_is_written(
        store: tuple[Engine, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A client's retry beside its first try (one request id twice in a batch), and a request id another call
    committed after this one looked: each such create answers with the job that holds the id, and the rest
    of the batch is still written together (one duplicate does not fail the batch)."""
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    versions = {c.tenant_id: register_version(engine, storage, tenant=c.tenant_id) for c in (ACME, BETA)}

    def request(name: str, request_id: str = "", tenant: str = "acme") -> pb.CreateTrainingJobRequest:
        made = job_request(versions[tenant], name=name)
        made.request_id = request_id
        return made

    raced, _ = app.create(ACME, request("raced"))  # the job a concurrent call claims req-race for, below

    def claim_meanwhile(run: Callable[[str, dict], None]) -> None:
        run("INSERT INTO unique_names (tenant_id, kind, name, aggregate_id) VALUES (:t, :k, :n, :a)",
            {"t": "acme", "k": "training-request", "n": "req-race", "a": raced.job_id})

    followers = [(ACME, request("a", "req-dup")), (ACME, request("b")), (ACME, request("c", "req-dup")),
                 (ACME, request("d", "req-own")), (ACME, request("e", "req-race")), (BETA, request("f", "req-dup", "beta"))]
    before = app.new_jobs.batches
    with caplog.at_level(logging.INFO, logger="services.orchestrator.application"):
        outcomes = _batched(app, engine, (ACME, request("leader")), followers, claim_meanwhile)
    assert not [r for r in caplog.records if "was not written" in r.getMessage()], "a duplicate failed the batch"

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    ids = [state.job_id for state, _ in outcomes]
    assert ids[1] == ids[3], "two creates with one request id made two jobs"
    assert ids[5] == raced.job_id, "a request id claimed meanwhile made a second job"
    assert ids[6] not in (ids[1], ids[3]), "another tenant's request id is its own"
    expected = (1, 7) if engine.dialect.name == "sqlite" else (2, 6)
    assert (app.new_jobs.batches - before, app.new_jobs.largest) == expected
    with engine.connect() as conn:
        streams = conn.execute(text("SELECT count(DISTINCT stream_id) FROM stored_events "
                                    "WHERE stream_type = 'training_job'")).scalar_one()
        claims = {(t, n): a for t, n, a in conn.execute(text("SELECT tenant_id, name, aggregate_id FROM unique_names"))}
    assert streams == 6, "a create was written twice, or a job is missing"  # raced, leader, a, b, d, f (beta)
    assert claims == {("acme", "req-dup"): ids[1], ("acme", "req-own"): ids[4], ("acme", "req-race"): raced.job_id,
                      ("beta", "req-dup"): ids[6]}
    for job_id in set(ids):
        assert [v for _, v, _ in _events(engine, job_id)] == [1, 2]
    assert _orphan_outbox_rows(engine) == 0
    again = app.create(ACME, request("g", "req-own"))  # the id keeps answering with its job
    assert again[0].job_id == ids[4]


def test_a_commit_that_landed_though_it_failed_is_answered_with_its_job(store: tuple[Engine, str],
                                                                        tmp_path: Path) -> None:
    """The store committed a create but the commit reported a failure (a connection lost at that moment): the
    create, tried again on its own with the same job id, answers with the job instead of making another."""
    engine, storage = store
    app = _app(engine, tmp_path, storage)
    version = register_version(engine, storage)
    dialect = engine.dialect
    commit = dialect.do_commit
    failed: list[str] = []

    def commit_then_fail(conn: Any) -> None:
        commit(conn)
        if not failed:
            failed.append("once")
            raise dialect.loaded_dbapi.OperationalError("connection lost after the commit (test)")

    dialect.do_commit = commit_then_fail  # type: ignore[method-assign]
    try:
        state, position = app.create(ACME, job_request(version, name="landed"))
    finally:
        dialect.do_commit = commit  # type: ignore[method-assign]
    assert failed == ["once"]
    with engine.connect() as conn:
        streams = conn.execute(text("SELECT count(DISTINCT stream_id) FROM stored_events "
                                    "WHERE stream_type = 'training_job'")).scalar_one()
    assert streams == 1 and state.version == 2 and position


def test_creates_are_batched_by_default_on_sqlite_only(store: tuple[Engine, str], tmp_path: Path) -> None:
    engine, storage = store
    app = _app(engine, tmp_path, storage, batch=0)
    assert app.new_jobs.max_batch == CREATE_BATCH.get(engine.dialect.name, 1)
    assert app.new_jobs.max_batch == (32 if engine.dialect.name == "sqlite" else 1)
