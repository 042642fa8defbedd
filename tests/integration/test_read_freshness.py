"""Reads say how fresh they are and keep up, on SQLite and PostgreSQL (issue 17).

- read your writes: every Create followed by a List with ``min_position`` shows the new job,
  under concurrent creates, gets and lists; a position never written is refused, not awaited;
- the job list is never behind the event store: a sampler counts, in one statement per sample
  (one snapshot), the jobs stored but not listed, while clients create jobs (no timing asserted);
- on SQLite a reader never waits for a writer: a Get and a List answer while another connection
  holds the write lock.
"""

from __future__ import annotations

import threading
from concurrent import futures
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from sqlalchemy import text

from privtune.platform import Platform
from privtune.v1 import training_service_pb2 as pb
from services.common import positions
from services.common.store.engine import reader
from tests.orchestrator_fixtures import job_request, register_version, training_stub
from tests.platform_fixtures import metadata, start_platform
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

CREATORS = 6           # threads that create and then read their own write
CREATES_EACH = 8
READERS = 4            # threads that get and list meanwhile
JOBS_BEHIND_SQL = (
    "SELECT count(*) FROM stored_events e WHERE e.stream_type = 'training_job' AND e.stream_version = 1 "
    "AND NOT EXISTS (SELECT 1 FROM training_job_view v WHERE v.tenant_id = e.tenant_id AND v.job_id = e.stream_id)")


@pytest.fixture(params=["sqlite", "postgres"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    store = None if request.param == "sqlite" else request.getfixturevalue("postgres_db_factory")("fresh")
    make_models(tmp_path / "models")
    p = start_platform(tmp_path, services=("orchestrator",), store_uri=store)
    yield p
    p.stop()


def _listed(stub: object, min_position: str = "", page_size: int = 500, state: int = 0) -> tuple[set[str], str]:
    """Every job id of the tenant's list read at ``min_position`` or later, and the first page's position."""
    ids: set[str] = set()
    token, first = "", ""
    while True:
        page = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(  # type: ignore[attr-defined]
            page_size=page_size, page_token=token, min_position=min_position, state=state),
            metadata=metadata("acme"), timeout=30)
        first = first or page.position
        assert page.position
        assert not ids & {job.job_id for job in page.jobs}, "a job listed on two pages"
        ids.update(job.job_id for job in page.jobs)
        if not page.next_page_token:
            return ids, first
        token = page.next_page_token


def test_reads_see_their_writes_and_the_job_list_never_trails_the_event_store(platform: Platform) -> None:
    stub = training_stub(platform)
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    stop = threading.Event()
    behind: list[int] = []
    created: list[str] = []

    def sample_lag() -> None:
        with reader(platform.engine).connect() as conn:  # type: ignore[arg-type]
            while not stop.is_set():
                behind.append(int(conn.execute(text(JOBS_BEHIND_SQL)).scalar() or 0))

    def create_then_list(n: int) -> list[str]:
        missing = []
        for i in range(CREATES_EACH):
            answer = stub.CreateTrainingJob(job_request(version, name=f"ryw-{n}-{i}"), metadata=metadata("acme"),
                                            timeout=60)
            assert answer.position.startswith("p1.")
            created.append(answer.job.job_id)
            listed, _ = _listed(stub, answer.position, page_size=7)  # several pages, each after the last
            if answer.job.job_id not in listed:
                missing.append(answer.job.job_id)
        return missing

    def read_meanwhile() -> int:
        calls = 0
        while not stop.is_set():
            if created:
                stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=created[-1]), metadata=metadata("acme"), timeout=30)
            stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=50), metadata=metadata("acme"), timeout=30)
            calls += 1
        return calls

    sampler = threading.Thread(target=sample_lag, daemon=True)
    sampler.start()
    with futures.ThreadPoolExecutor(CREATORS + READERS) as pool:
        readers = [pool.submit(read_meanwhile) for _ in range(READERS)]
        missing = [job for f in [pool.submit(create_then_list, n) for n in range(CREATORS)] for job in f.result()]
        stop.set()
        reads = sum(f.result() for f in readers)
    sampler.join()
    assert missing == [], f"{len(missing)} creates were not in a list read at their position"
    assert len(created) == CREATORS * CREATES_EACH and reads > 0
    assert len(behind) >= 10, "the sampler must have run while the clients did"
    assert max(behind) == 0, f"the job list trailed the event store by up to {max(behind)} jobs"


def test_pages_with_and_without_a_filter_list_every_job_once(platform: Platform) -> None:
    stub = training_stub(platform)
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    made = {stub.CreateTrainingJob(job_request(version, name=f"page-{i}"), metadata=metadata("acme"),
                                   timeout=60).job.job_id for i in range(5)}
    assert _listed(stub, page_size=2)[0] == made
    # the controller may schedule a job meanwhile (one local GPU): every job a filtered page shows is in that
    # state, none twice, and the queued ones span pages
    queued, token = [], ""
    while True:
        page = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(page_size=2, page_token=token,
                                                                state=pb.TRAINING_JOB_STATE_QUEUED),
                                     metadata=metadata("acme"), timeout=30)
        assert all(job.state == pb.TRAINING_JOB_STATE_QUEUED for job in page.jobs)
        queued += [job.job_id for job in page.jobs]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert len(queued) == len(set(queued)) >= 3 and set(queued) <= made
    assert _listed(stub, page_size=2, state=pb.TRAINING_JOB_STATE_REJECTED)[0] == set()


def test_positions_are_sealed_per_tenant_and_a_forged_one_is_refused(platform: Platform) -> None:
    """Raw positions would be one sequence shared by every tenant (two of them tell a tenant how busy the
    others were in between), so a caller only ever sees sealed ones, and can only hand them back."""
    stub = training_stub(platform)
    version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
    mine = stub.CreateTrainingJob(job_request(version, name="mine"), metadata=metadata("acme"), timeout=60)
    _, first = _listed(stub, mine.position)
    _, again = _listed(stub, mine.position)
    assert first != again and mine.position not in (first, again), "the same position must not look the same"
    assert "seq" not in first and not first[3:].isdigit()
    body = first[3:]
    forged = [
        "p1." + ("A" if body[0] != "A" else "B") + body[1:],   # one character of the ciphertext changed
        "p1." + body[:-2],                                       # cut short
        "12345", "p1.", "p1.!!!!", "p2." + body, "p1." + "A" * 300,
    ]
    for bad in forged:
        with pytest.raises(grpc.RpcError) as err:
            stub.ListTrainingJobs(pb.ListTrainingJobsRequest(min_position=bad), metadata=metadata("acme"), timeout=30)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
        assert "not a position this tenant was given" in (err.value.details() or "")
    # another tenant's positions are its own: nothing written yet is "", and acme's position is
    # refused there rather than interpreted
    other = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=metadata("globex"), timeout=30)
    assert other.position == "" and not other.jobs
    with pytest.raises(grpc.RpcError) as err:
        stub.ListTrainingJobs(pb.ListTrainingJobsRequest(min_position=mine.position), metadata=metadata("globex"),
                              timeout=30)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # sealed by this store for this tenant but ahead of it (a store restored from an older backup)
    ahead = positions.seal(platform.engine, "acme", 2**40)  # type: ignore[arg-type]
    with pytest.raises(grpc.RpcError) as err:
        stub.ListTrainingJobs(pb.ListTrainingJobsRequest(min_position=ahead), metadata=metadata("acme"), timeout=30)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "restored" in (err.value.details() or "")
    cancelled = stub.CancelTrainingJob(pb.CancelTrainingJobRequest(job_id=mine.job.job_id, reason="done"),
                                       metadata=metadata("acme"), timeout=30)
    listed, _ = _listed(stub, cancelled.position)
    assert mine.job.job_id in listed


def test_sqlite_readers_answer_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    make_models(tmp_path / "models")
    platform = start_platform(tmp_path, services=("orchestrator",))
    try:
        stub = training_stub(platform)
        version = register_version(platform.engine, platform.config.storage_uri)  # type: ignore[arg-type]
        job = stub.CreateTrainingJob(job_request(version, name="held"), metadata=metadata("acme"), timeout=60).job
        assert platform.engine is not None
        with platform.engine.begin() as conn:  # BEGIN IMMEDIATE: the write lock, held until the block ends
            conn.execute(text("UPDATE training_job_view SET name = name WHERE job_id = :j"), {"j": job.job_id})
            got = stub.GetTrainingJob(pb.GetTrainingJobRequest(job_id=job.job_id), metadata=metadata("acme"),
                                      timeout=10).job
            listed = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(), metadata=metadata("acme"), timeout=10)
        assert got.job_id == job.job_id and job.job_id in {j.job_id for j in listed.jobs}
        with reader(platform.engine).connect() as conn, pytest.raises(Exception, match="readonly|read-only"):
            conn.execute(text("DELETE FROM training_job_view"))  # a reader cannot write, even by mistake
    finally:
        platform.stop()
