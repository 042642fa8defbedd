"""The audit log's store side on SQLite and PostgreSQL, and its sealing into every WORM backend:
racing writers never fork a chain, a redelivered event is never a second record, a sealer killed
between its steps finishes with the very same bytes, and what is sealed verifies."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from services.audit import log_store
from services.audit.projector import Entry
from services.audit.sealer import RetentionPolicy, Sealer
from services.audit.signed_heads import key_id, new_private_key
from services.audit.store_verify import verify_stored_log
from services.audit.verify import verify_log
from services.audit.worm import Retention, SegmentStore, open_segment_store
from services.common.clock import now_ms
from services.common.errors import ConcurrencyConflict
from services.common.store import open_store
from tests.s3_fixtures import S3Server
from tests.stores import fresh_store_url

pytestmark = pytest.mark.contract


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    e = open_store(fresh_store_url(request, request.param, tmp_path))
    yield e
    e.dispose()


@pytest.fixture(params=["file", "s3"])
def worm(request: pytest.FixtureRequest, tmp_path: Path) -> SegmentStore:
    if request.param == "file":
        return open_segment_store((tmp_path / "segments").as_uri())
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = f"privtune-audit-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return open_segment_store(f"s3://{bucket}/audit?endpoint_url={server.endpoint_url}")


def _entry(tenant: str, record_id: str, kind: str = "rpc.allowed") -> Entry:
    return Entry(tenant_id=tenant, record_id=record_id, time_ms=1_700_000_000_000, kind=kind, actor="alice",
                 resource="dataset/ds-1", outcome="OK", correlation_id="c", attributes={"n": "1"})


def _append(engine: Engine, entries: list[Entry]) -> None:
    """As the consumer does: retried while another writer wins the race."""
    while True:
        try:
            with engine.begin() as conn:
                log_store.append(conn, entries, now_ms())
            return
        except (ConcurrencyConflict, OperationalError):
            continue


def test_racing_writers_never_fork_a_chain_or_repeat_a_record(engine: Engine) -> None:
    def writer(w: int) -> None:
        for b in range(15):
            # every writer also re-sends a record another writer sends: one of them wins, once
            _append(engine, [_entry("acme", f"w{w}-b{b}-{i}") for i in range(4)] + [_entry("acme", f"shared-{b}"),
                                                                                    _entry("globex", f"w{w}-{b}")])
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with engine.connect() as conn:
        acme = log_store.records_between(conn, "acme", 1, 10**6)
        globex = log_store.records_between(conn, "globex", 1, 10**6)
        positions = log_store.records_after_position(conn, 0, 10**6)
    assert len(acme) == 3 * 15 * 4 + 15 and len(globex) == 45
    assert len({r.record_id for r in acme}) == len(acme)
    assert verify_log(acme, [], {}, tenant_id="acme").ok and verify_log(globex, [], {}, tenant_id="globex").ok
    # one global, gap-free order across tenants, for exporters
    assert [p for p, _ in positions] == list(range(1, len(acme) + len(globex) + 1))


def test_a_redelivered_entry_is_not_a_second_record(engine: Engine) -> None:
    _append(engine, [_entry("acme", "e-1"), _entry("acme", "e-2")])
    _append(engine, [_entry("acme", "e-2"), _entry("acme", "e-3"), _entry("acme", "e-3")])
    with engine.connect() as conn:
        assert [r.record_id for r in log_store.records_between(conn, "acme", 1, 99)] == ["e-1", "e-2", "e-3"]


class _Crash(Exception):
    pass


class _CrashingStore:
    """The WORM store, with the process 'killed' before or after one seal."""

    def __init__(self, inner: SegmentStore, when: str) -> None:
        self.inner, self.when, self.uri = inner, when, inner.uri

    def seal(self, tenant_id: str, name: str, data: bytes, retention: Retention) -> None:
        if self.when == "before":
            raise _Crash()
        self.inner.seal(tenant_id, name, data, retention)
        raise _Crash()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_sealer_killed_mid_seal_finishes_with_the_same_bytes(engine: Engine, worm: SegmentStore,
                                                                when: str) -> None:
    key = new_private_key()
    _append(engine, [_entry("acme", f"r-{i}") for i in range(10)])
    crashing = Sealer(engine, _CrashingStore(worm, when), key, RetentionPolicy(default_days=1), seal_records=4)
    with pytest.raises(_Crash):
        crashing.step()
    sealer = Sealer(engine, worm, key, RetentionPolicy(default_days=1), seal_records=4)
    sealer.flush()
    assert worm.names("acme") == ["000000000001-000000000004.jsonl", "000000000005-000000000008.jsonl",
                                  "000000000009-000000000010.jsonl"]
    with engine.connect() as conn:
        assert log_store.chain_state(conn, "acme").sealed_size == 10
        assert [h.head.size for h in log_store.heads_of(conn, "acme")] == [4, 8, 10]  # none signed twice
    report = verify_stored_log(worm, "acme", {key_id(key.public_key()): key.public_key()})
    assert report.ok and report.report.checked_records == 10 and report.report.checked_heads == 3


def test_more_records_after_a_seal_go_in_the_next_segment(engine: Engine, worm: SegmentStore) -> None:
    key = new_private_key()
    sealer = Sealer(engine, worm, key, RetentionPolicy(days={"acme": 30}, legal_hold=frozenset({"acme"})),
                    seal_records=100, seal_ms=10**9)
    _append(engine, [_entry("acme", "a")])
    assert not sealer.step()  # neither 100 records nor the time: not due
    sealer.flush()
    _append(engine, [_entry("acme", "b"), _entry("acme", "c")])
    sealer.flush()
    assert worm.names("acme") == ["000000000001-000000000001.jsonl", "000000000002-000000000003.jsonl"]
    read = worm.read("acme", "000000000002-000000000003.jsonl")
    assert read.legal_hold and read.retain_until_ms > 0
    assert verify_stored_log(worm, "acme", {key_id(key.public_key()): key.public_key()}).ok


def test_an_overwritten_s3_segment_verifies_from_its_locked_version(engine: Engine, s3_server: S3Server) -> None:
    bucket = f"privtune-audit-{uuid.uuid4().hex[:12]}"
    client = s3_server.client()
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    store = open_segment_store(f"s3://{bucket}/audit?endpoint_url={s3_server.endpoint_url}")
    key = new_private_key()
    _append(engine, [_entry("acme", f"r-{i}") for i in range(3)])
    Sealer(engine, store, key, RetentionPolicy(default_days=1)).flush()
    object_key = "audit/acme/000000000001-000000000003.jsonl"
    original = client.list_object_versions(Bucket=bucket, Prefix=object_key)["Versions"][0]["VersionId"]
    client.put_object(Bucket=bucket, Key=object_key, Body=b'{"forged": true}\n')  # only adds a version
    with pytest.raises(client.exceptions.ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=object_key, VersionId=original)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    report = verify_stored_log(store, "acme", {key_id(key.public_key()): key.public_key()})
    assert report.ok and report.report.checked_records == 3
    assert report.extra_versions and "1 later version" in report.extra_versions[0]
