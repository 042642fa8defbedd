"""Access records as an attacker or an outage would meet them: a flood of anonymous calls is counted,
not written one by one; a call is never served unaudited when its record cannot be kept; every
allowed call says how it ended, under the caller's verified tenant."""

from __future__ import annotations

import contextlib
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import events_pb2
from services.audit import log_store
from services.common import envelope as codec
from services.common.access_log import AccessDenialRecorder, AllowedCallRecorder
from services.common.errors import Unavailable
from services.common.identity import Caller
from services.common.store import open_store
from services.common.store.schema import outbox, stored_events
from tests.platform_fixtures import channel, dataset_stub, metadata, start_platform, wait_until

pytestmark = pytest.mark.integration


def _denials(engine) -> list[events_pb2.AccessDenied]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        rows = conn.execute(select(stored_events.c.payload).where(
            stored_events.c.event_type == "privtune.v1.AccessDenied")).scalars().all()
    return [codec.decode(bytes(p)).access_denied for p in rows]


def test_a_flood_of_anonymous_calls_is_counted_not_written_one_by_one(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    recorder = AccessDenialRecorder(engine, unauthenticated_per_s=5)
    for _ in range(40):
        recorder({}, "/privtune.v1.DatasetService/ListDatasets", "no token", "authentication")
    recorder({"x-privtune-tenant": "acme", "x-privtune-actor": "eve"}, "/privtune.v1.X/Y", "role", "authorization")
    one_by_one = _denials(engine)
    assert len([d for d in one_by_one if d.rule == "authentication"]) <= 10  # at most two one-second windows
    assert [d.principal for d in one_by_one if d.rule == "authorization"] == ["eve"]  # verified: never throttled
    counted = recorder.flush_throttled()
    throttled = [d for d in _denials(engine) if d.rule == "throttled"]
    assert counted >= 30 and len(throttled) == 1 and str(counted) in throttled[0].reason
    assert counted + len([d for d in one_by_one if d.rule == "authentication"]) == 40  # none unaccounted for


def test_no_call_is_served_while_its_record_cannot_be_kept(tmp_path: Path) -> None:
    recorder = AllowedCallRecorder(open_store(f"sqlite:///{tmp_path}/store.db"), limit=2)
    caller = Caller(tenant_id="acme", actor="alice", roles=frozenset({"viewer"}), via="token")
    for _ in range(2):
        recorder.admit()
        recorder(caller, "/privtune.v1.DatasetService/ListDatasets", "", "OK", 1, "")
    with pytest.raises(Unavailable) as refused:  # the queue is full and nothing stores it (the store is "down")
        recorder.admit()
    assert refused.value.reason == "AUDIT_BACKLOG"
    assert recorder.flush() == 2  # once the store takes them, calls are admitted again
    recorder.admit()


def test_a_flush_under_load_writes_one_batch_not_one_after_another(tmp_path: Path) -> None:
    """Calls made while a flush waits for the store go in the next flush (a batch per interval under load,
    not back-to-back transactions holding SQLite's write lock); a full batch's backlog drains at once."""
    import sqlite3
    import threading

    from services.common import access_log

    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    recorder = AllowedCallRecorder(engine)
    caller = Caller(tenant_id="acme", actor="alice", roles=frozenset({"viewer"}), via="token")

    def calls(n: int) -> None:
        for _ in range(n):
            recorder.admit()
            recorder(caller, "/privtune.v1.DatasetService/ListDatasets", "", "OK", 1, "")

    calls(5)
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the store is busy: the flush waits for its write lock
    flushed: list[int] = []
    flushing = threading.Thread(target=lambda: flushed.append(recorder.flush()))
    flushing.start()
    wait_until(lambda: recorder.queue.qsize() == 0, timeout=30)  # it took the five and waits to write them
    calls(3)  # made meanwhile
    holder.rollback()
    holder.close()
    flushing.join(30)
    assert flushed == [5] and recorder.queue.qsize() == 3
    assert recorder.flush() == 3
    calls(access_log.FLUSH_BATCH + 7)
    assert recorder.flush() == access_log.FLUSH_BATCH + 7  # full batches: the backlog goes in one flush

    # at shutdown the recorder drains: calls that ended while its last batch waited are stored too
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    calls(4)
    stop = threading.Event()
    stop.set()
    stopping = threading.Thread(target=recorder.run, args=(stop,))
    stopping.start()
    wait_until(lambda: recorder.queue.qsize() == 0, timeout=30)
    calls(2)
    holder.rollback()
    holder.close()
    stopping.join(30)
    assert not stopping.is_alive() and recorder.queue.qsize() == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == access_log.FLUSH_BATCH + 21


@pytest.fixture
def platform(tmp_path: Path):  # type: ignore[no-untyped-def]
    p = start_platform(tmp_path, audit_seal_ms=100)
    yield p
    p.stop()


def test_allowed_calls_say_how_they_ended(platform: Platform) -> None:
    stub = dataset_stub(platform)
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetDataset(dpb.GetDatasetRequest(dataset_id="ds-nope"), metadata=metadata("acme", "alice"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    stub.ListDatasets(dpb.ListDatasetsRequest(), metadata=metadata("acme", "alice"), timeout=30)
    with pytest.raises(grpc.RpcError):  # no token at all: the platform's log, not any tenant's
        dataset_stub(platform).ListDatasets(dpb.ListDatasetsRequest(), timeout=30)
    assert platform.engine is not None

    def records(tenant: str) -> list:  # type: ignore[type-arg]
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            return log_store.records_between(conn, tenant, 1, 10**6)
    wait_until(lambda: len([r for r in records("acme") if r.kind == "rpc.allowed"]) >= 2, timeout=30,
               what="both calls in acme's log")
    by_method = {dict(r.attributes)["method"].rsplit("/", 1)[-1]: r for r in records("acme")}
    assert by_method["GetDataset"].outcome == "NOT_FOUND" and by_method["GetDataset"].resource == "dataset_id=ds-nope"
    assert by_method["ListDatasets"].outcome == "OK" and dict(by_method["ListDatasets"].attributes)["via"] == "token"
    wait_until(lambda: any(r.kind == "rpc.denied" for r in records("platform")), timeout=30,
               what="the anonymous call in the platform's log")
    assert all(r.actor != "anonymous" for r in records("acme"))
    channel(platform).close()


class _CommitThenFail:
    """The store commits, then the connection drops before the answer (as PostgreSQL can at COMMIT)."""

    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.engine, self.failures = engine, 1

    @contextlib.contextmanager
    def begin(self):  # type: ignore[no-untyped-def]
        with self.engine.begin() as conn:
            yield conn
        if self.failures:
            self.failures -= 1
            raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection unexpectedly"))

    def connect(self):  # type: ignore[no-untyped-def]
        return self.engine.connect()


def test_a_batch_whose_commit_answer_was_lost_is_not_stored_twice_nor_wedged(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    recorder = AllowedCallRecorder(engine)
    recorder.engine = _CommitThenFail(engine)  # type: ignore[assignment]
    caller = Caller(tenant_id="acme", actor="alice", roles=frozenset({"viewer"}), via="token")
    for _ in range(5):
        recorder(caller, "/privtune.v1.DatasetService/ListDatasets", "", "OK", 1, "")
    with pytest.raises(OperationalError):
        recorder.flush()
    recorder(caller, "/privtune.v1.DatasetService/GetDataset", "ds-1", "OK", 1, "")  # a call meanwhile
    # the retry finds the batch already stored (no conflict, no second copy) and stores the new call's record
    assert recorder.flush() == 1
    recorder(caller, "/privtune.v1.DatasetService/ListDatasets", "", "OK", 1, "")
    assert recorder.flush() == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(stored_events)).scalar() == 7
        assert conn.execute(select(func.count()).select_from(outbox)).scalar() == 7


def test_a_stream_is_recorded_when_it_opens_and_again_when_it_ends(platform: Platform) -> None:
    from tests.platform_fixtures import register

    stub = dataset_stub(platform)
    dataset = register(stub, platform, "acme", "watched")
    stream = stub.WatchDataset(dpb.WatchDatasetRequest(dataset_id=dataset.dataset_id),
                               metadata=metadata("acme", "wanda"), timeout=30)
    next(stream)
    stream.cancel()
    assert platform.engine is not None

    def outcomes() -> list[str]:
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            return [r.outcome for r in log_store.records_between(conn, "acme", 1, 10**6)
                    if r.actor == "wanda" and dict(r.attributes).get("method", "").endswith("/WatchDataset")]
    wait_until(lambda: len(outcomes()) >= 2, timeout=30, what="the stream's opening and end in acme's log")
    opened, ended = sorted(outcomes(), key=lambda o: o != "OPENED")  # two events, maybe on two partitions
    assert opened == "OPENED" and ended in ("CANCELLED", "OK")


def test_a_certificate_cannot_write_into_a_tenants_trail(platform: Platform) -> None:
    """A component names the tenant it acts for; a refusal of it goes to the platform's trail, not that tenant's."""
    from privtune.v1 import curation_work_service_pb2 as wpb
    from privtune.v1 import curation_work_service_pb2_grpc as wgrpc
    from tests.platform_fixtures import component_channel, component_metadata

    with component_channel(platform, "worker", "k8s-someones-pod-a1") as pod:  # a per-attempt pod certificate
        with pytest.raises(grpc.RpcError) as refused:  # a pod claims its training attempt, never curation work
            wgrpc.CurationWorkServiceStub(pod).ClaimCurationJob(
                wpb.ClaimCurationJobRequest(job_id="cj-victim", worker_id="k8s-someones-pod-a1", claim_id="c"),
                metadata=component_metadata("victim"), timeout=30)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError):
            dataset_stub(platform).ListDatasets(dpb.ListDatasetsRequest(), metadata=component_metadata("victim"),
                                                timeout=30)
    assert platform.engine is not None

    def trail(tenant: str) -> list:  # type: ignore[type-arg]
        with platform.engine.connect() as conn:  # type: ignore[union-attr]
            return log_store.records_between(conn, tenant, 1, 10**6)
    wait_until(lambda: any(r.actor == "worker:k8s-someones-pod-a1" and r.kind == "rpc.denied"
                           for r in trail("platform")), timeout=30, what="the pod's refusal in the platform trail")
    assert not trail("victim")
