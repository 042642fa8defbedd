"""On PostgreSQL a create that reserves no privacy budget is written as one statement that is its own
transaction (``store.one_statement``): its request id's claim, its events, their outbox rows and its view
row, in one round trip. What a create writes and answers must not change with that, above all where it
races: a request id claimed by a transaction still open when the create looked it up.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from services.common import positions
from services.common.identity import Caller
from services.common.store.engine import dispose, open_store
from services.orchestrator.application import REQUEST_KIND, TrainingJobApplication
from services.orchestrator.settings import OrchestratorSettings
from tests.orchestrator_fixtures import job_request, register_version
from tests.stores import fresh_store_url
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

ACME = Caller(tenant_id="acme", actor="alice")


@pytest.fixture
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    made = open_store(fresh_store_url(request, "postgresql", tmp_path))
    yield made
    dispose(made)


def _app(engine: Engine, tmp_path: Path) -> TrainingJobApplication:
    make_models(tmp_path / "models")
    return TrainingJobApplication(engine, OrchestratorSettings(
        models_dir=tmp_path / "models", storage_uri=str(tmp_path / "storage"), policies_dir=tmp_path / "none"))


def _request(version: str, name: str, request_id: str = "") -> Any:
    request = job_request(version, name=name)
    request.request_id = request_id
    return request


def _count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def _stored(engine: Engine, job_id: str) -> tuple[int, int, int]:
    """The job's events, their outbox rows and its view rows."""
    return (_count(engine, "SELECT count(*) FROM stored_events WHERE stream_id = :j", j=job_id),
            _count(engine, "SELECT count(*) FROM outbox o JOIN stored_events e ON e.event_id = o.event_id "
                           "WHERE e.stream_id = :j", j=job_id),
            _count(engine, "SELECT count(*) FROM training_job_view WHERE job_id = :j", j=job_id))


def test_a_create_is_one_statement_that_stores_all_of_it(engine: Engine, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(engine, tmp_path)
    version = register_version(engine, str(tmp_path / "storage"))
    app.create(ACME, _request(version, "warm-up"))  # the first also makes the tenant's position key
    sent: list[tuple[str, bool, int]] = []
    execute = psycopg.Cursor.execute

    def counted(self: psycopg.Cursor, query: Any, *args: Any, **kwargs: Any) -> Any:
        if "INSERT" in str(query) or "UPDATE" in str(query):  # with the connection's state as it was sent
            sent.append((str(query), self.connection.autocommit, self.connection.info.transaction_status))
        return execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", counted)  # observes; the real driver runs every statement
    state, position = app.create(ACME, _request(version, "at-once", "req-1"))
    monkeypatch.undo()
    [(query, autocommit, status)] = sent  # claim, events, outbox, view: one statement ...
    assert query.startswith("WITH ") and query.count("INSERT INTO") == 4
    # ... its own transaction: sent in autocommit, so psycopg sends no BEGIN before it and no COMMIT after
    assert autocommit and status == psycopg.pq.TransactionStatus.IDLE
    assert _stored(engine, state.job_id) == (2, 2, 1) and state.version == 2
    assert _count(engine, "SELECT count(*) FROM unique_names WHERE name = 'req-1' AND aggregate_id = :j",
                  j=state.job_id) == 1
    newest = _count(engine, "SELECT max(seq) FROM stored_events WHERE stream_id = :j", j=state.job_id)
    assert positions.unseal(engine, ACME.tenant_id, position) == newest
    again, _ = app.create(ACME, _request(version, "at-once", "req-1"))  # a retry
    assert again.job_id == state.job_id


def test_a_request_id_claimed_by_an_open_transaction_stores_nothing_and_answers_its_job(
        engine: Engine, tmp_path: Path) -> None:
    """The create looks the request id up while another call's transaction holds it uncommitted, so it finds
    nothing and writes; its statement waits at the id's key until that transaction commits, then fails. The
    create answers the other call's job, and none of its own rows (events, outbox, view) is stored."""
    app = _app(engine, tmp_path)
    version = register_version(engine, str(tmp_path / "storage"))
    holder_job, _ = app.create(ACME, _request(version, "first"))
    jobs_before = _count(engine, "SELECT count(DISTINCT stream_id) FROM stored_events "
                                 "WHERE stream_type = 'training_job'")
    outcome: list[Any] = []
    with engine.connect() as holder, holder.begin():
        holder.execute(text("INSERT INTO unique_names (tenant_id, kind, name, aggregate_id) "
                            "VALUES ('acme', :kind, 'req-raced', :job)"),
                       {"kind": REQUEST_KIND, "job": holder_job.job_id})

        def create() -> None:
            try:
                outcome.append(app.create(ACME, _request(version, "raced", "req-raced")))
            except Exception as error:  # noqa: BLE001 - asserted below
                outcome.append(error)

        racer = threading.Thread(target=create)
        racer.start()
        # the create's statement waits for the holder's transaction at the request id's key
        deadline = time.monotonic() + 60
        while _count(engine, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock' AND left(query, 5) = 'WITH '") == 0 and racer.is_alive():
            assert time.monotonic() < deadline, "the create neither ended nor waited for the open claim"
            time.sleep(0.02)
        assert racer.is_alive(), f"the create did not wait for the open claim: {outcome}"
    racer.join(60)
    assert not racer.is_alive()
    [answer] = outcome
    assert not isinstance(answer, Exception), answer
    state, _position = answer
    assert state.job_id == holder_job.job_id
    assert _count(engine, "SELECT count(DISTINCT stream_id) FROM stored_events "
                          "WHERE stream_type = 'training_job'") == jobs_before
    assert _count(engine, "SELECT count(*) FROM outbox o WHERE NOT EXISTS "
                          "(SELECT 1 FROM stored_events e WHERE e.event_id = o.event_id)") == 0
    assert _count(engine, "SELECT count(*) FROM training_job_view") == jobs_before
