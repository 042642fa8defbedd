"""The WORM segment store contract: every backend (local folder, S3 with Object Lock) passes the same tests.

The S3 tests run against moto's server; what moto does not enforce of Object Lock is
listed in docs/security.md ("WORM storage of the audit log").
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from services.audit.worm import Retention, SegmentExists, SegmentStore, open_segment_store
from services.audit.worm.file import TEMP_PREFIX
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.s3_fixtures import S3Server

pytestmark = pytest.mark.contract

FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01, a whole second: every store reports it exactly
SEG1 = "000000000001-000000001000.jsonl"
SEG2 = "000000001001-000000002000.jsonl"
SEG3 = "000000002001-000000003000.jsonl"


@dataclass
class Backend:
    kind: str
    uri: str
    store: SegmentStore
    leftovers: Callable[[], list[str]]  # traces of unfinished seals (temp files)


def _locked_bucket(server: S3Server) -> str:
    bucket = f"privtune-worm-{uuid.uuid4().hex[:12]}"
    server.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        uri = (tmp_path / "audit").as_uri()

        def leftovers() -> list[str]:
            return [name for _, _, files in os.walk(tmp_path) for name in files if name.startswith(TEMP_PREFIX)]
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        uri = f"s3://{_locked_bucket(server)}/audit?endpoint_url={server.endpoint_url}"

        def leftovers() -> list[str]:
            return []  # a seal is one PUT: nothing partial can remain
    return Backend(request.param, uri, open_segment_store(uri), leftovers)


@dataclass
class S3Backend:
    store: SegmentStore
    client: Any
    bucket: str

    def key(self, tenant_id: str, name: str) -> str:
        return f"audit/{tenant_id}/{name}"

    def versions(self, tenant_id: str, name: str) -> list[str]:
        listing = self.client.list_object_versions(Bucket=self.bucket, Prefix=self.key(tenant_id, name))
        return [v["VersionId"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])]


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[S3Backend]:
    bucket = _locked_bucket(s3_server)
    yield S3Backend(open_segment_store(f"s3://{bucket}/audit?endpoint_url={s3_server.endpoint_url}"),
                    s3_server.client(), bucket)


# -- every backend -------------------------------------------------------------------------


def test_sealed_segments_read_back_with_their_retention(backend: Backend) -> None:
    s = backend.store
    assert s.uri.endswith("/") and "?" not in s.uri
    s.seal("acme", SEG2, b"two\n", Retention(FAR_FUTURE_MS))
    s.seal("acme", SEG1, b"one\n", Retention(0, legal_hold=True))
    s.seal("acme", "empty.jsonl", b"", Retention(0))
    assert s.names("acme") == [SEG1, SEG2, "empty.jsonl"]
    two = s.read("acme", SEG2)
    assert (two.data, two.extra_versions, two.retain_until_ms, two.legal_hold) == (b"two\n", 0, FAR_FUTURE_MS, False)
    one = s.read("acme", SEG1)
    assert (one.data, one.extra_versions, one.retain_until_ms, one.legal_hold) == (b"one\n", 0, 0, True)
    assert s.read("acme", "empty.jsonl").data == b""
    assert backend.leftovers() == []


def test_tenants_are_listed_and_kept_apart(backend: Backend) -> None:
    s = backend.store
    assert s.tenants() == [] and s.names("acme") == []
    s.seal("globex", SEG1, b"globex", Retention(0))
    s.seal("acme", SEG1, b"acme", Retention(0))
    assert s.tenants() == ["acme", "globex"]
    assert s.read("acme", SEG1).data == b"acme" and s.read("globex", SEG1).data == b"globex"
    assert s.names("initech") == []


def test_resealing_identical_bytes_is_a_no_op(backend: Backend) -> None:
    s = backend.store
    s.seal("acme", SEG1, b"records\n", Retention(FAR_FUTURE_MS))
    s.seal("acme", SEG1, b"records\n", Retention(0, legal_hold=True))
    got = s.read("acme", SEG1)
    assert (got.data, got.extra_versions, got.retain_until_ms, got.legal_hold) == (b"records\n", 0, FAR_FUTURE_MS,
                                                                                   False)
    assert s.names("acme") == [SEG1]


def test_different_bytes_under_a_sealed_name_are_refused(backend: Backend) -> None:
    s = backend.store
    s.seal("acme", SEG1, b"original\n", Retention(FAR_FUTURE_MS))
    with pytest.raises(SegmentExists, match=r"000000000001-000000001000\.jsonl.*already sealed") as err:
        s.seal("acme", SEG1, b"forged\n", Retention(FAR_FUTURE_MS))
    assert err.value.reason == "SEGMENT_EXISTS"
    got = s.read("acme", SEG1)
    assert (got.data, got.extra_versions) == (b"original\n", 0)
    assert backend.leftovers() == []


def test_of_concurrent_sealers_exactly_one_wins(backend: Backend) -> None:
    s = backend.store
    outcomes: list[bytes | None] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def seal(data: bytes) -> None:
        start.wait()
        try:
            s.seal("acme", SEG1, data, Retention(0))
            result: bytes | None = data
        except SegmentExists:
            result = None
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=seal, args=(f"writer {i}\n".encode(),)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o is not None]
    assert len(outcomes) == 8 and len(winners) == 1
    assert s.read("acme", SEG1).data == winners[0]
    assert backend.leftovers() == []


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", ".hidden", "Seg.jsonl", "a b", "a\n", "x" * 129])
def test_malformed_segment_names_are_refused(backend: Backend, name: str) -> None:
    s = backend.store
    for call in (lambda: s.seal("acme", name, b"x", Retention(0)), lambda: s.read("acme", name),
                 lambda: s.set_legal_hold("acme", name, True)):
        with pytest.raises(InvalidArgument, match="segment name .* is not valid") as err:
            call()
        assert err.value.reason == "INVALID_SEGMENT_NAME"
    assert s.tenants() == [] and backend.leftovers() == []


@pytest.mark.parametrize("tenant", ["", "Acme", "-acme", "acme/x", "..", "acme\n", "a" * 64])
def test_malformed_tenant_ids_are_refused(backend: Backend, tenant: str) -> None:
    s = backend.store
    for call in (lambda: s.seal(tenant, SEG1, b"x", Retention(0)), lambda: s.read(tenant, SEG1),
                 lambda: s.names(tenant), lambda: s.purge_expired(tenant, 0)):
        with pytest.raises(InvalidArgument, match="tenant id .* is not valid") as err:
            call()
        assert err.value.reason == "INVALID_TENANT_ID"
    assert s.tenants() == []


def test_a_missing_segment_is_not_found(backend: Backend) -> None:
    s = backend.store
    with pytest.raises(NotFound, match=r"000000000001-000000001000\.jsonl"):
        s.read("acme", SEG1)
    with pytest.raises(NotFound):
        s.set_legal_hold("acme", SEG1, True)


def test_purge_removes_only_expired_segments_without_a_legal_hold(backend: Backend) -> None:
    s = backend.store
    s.seal("acme", SEG1, b"one", Retention(0))
    s.seal("acme", SEG2, b"two", Retention(0, legal_hold=True))
    s.seal("acme", SEG3, b"three", Retention(FAR_FUTURE_MS))
    now_ms = int(time.time() * 1000)
    assert s.purge_expired("acme", now_ms) == [SEG1]
    assert s.names("acme") == [SEG2, SEG3]
    with pytest.raises(NotFound):
        s.read("acme", SEG1)
    s.set_legal_hold("acme", SEG3, True)
    assert s.read("acme", SEG3).legal_hold
    s.set_legal_hold("acme", SEG2, False)
    assert not s.read("acme", SEG2).legal_hold
    assert s.purge_expired("acme", now_ms) == [SEG2]
    assert s.names("acme") == [SEG3]
    assert s.read("acme", SEG3).data == b"three"


def test_a_segment_is_purged_once_its_retention_ends(backend: Backend) -> None:
    s = backend.store
    sealed_at = int(time.time() * 1000)
    s.seal("acme", SEG1, b"short-lived", Retention(sealed_at + 2000))
    assert s.purge_expired("acme", sealed_at) == []
    deadline = time.monotonic() + 20
    while not (purged := s.purge_expired("acme", int(time.time() * 1000))) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert purged == [SEG1]
    assert s.names("acme") == []


def test_an_unknown_scheme_or_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="scheme 'gs' is not supported; use one of file://, s3://"):
        open_segment_store("gs://bucket/audit")
    with pytest.raises(InvalidArgument, match="takes no options"):
        open_segment_store(f"{tmp_path.as_uri()}?fsync=0")
    with pytest.raises(InvalidArgument, match="unknown s3 audit store option"):
        open_segment_store("s3://bucket/audit?part_size=1")


# -- file:// ------------------------------------------------------------------------------


def test_file_segments_and_their_sidecars_are_read_only(tmp_path: Path) -> None:
    s = open_segment_store((tmp_path / "audit").as_uri())
    s.seal("acme", SEG1, b"one", Retention(FAR_FUTURE_MS))
    s.set_legal_hold("acme", SEG1, True)
    segment = tmp_path / "audit" / "acme" / SEG1
    sidecar = tmp_path / "audit" / "acme" / ".retention" / f"{SEG1}.json"
    assert segment.stat().st_mode & 0o777 == 0o444
    assert sidecar.stat().st_mode & 0o777 == 0o444
    assert sorted(p.name for p in (tmp_path / "audit" / "acme").iterdir()) == [".retention", SEG1]
    assert s.purge_expired("acme", FAR_FUTURE_MS + 1) == []  # held


def test_file_reseal_restores_a_sidecar_lost_in_a_crash(tmp_path: Path) -> None:
    s = open_segment_store((tmp_path / "audit").as_uri())
    s.seal("acme", SEG1, b"one", Retention(FAR_FUTURE_MS))
    sidecar = tmp_path / "audit" / "acme" / ".retention" / f"{SEG1}.json"
    sidecar.unlink()  # as if the process died between the segment and its sidecar
    assert s.purge_expired("acme", FAR_FUTURE_MS + 1) == []  # unknown retention: kept
    with pytest.raises(FailedPrecondition, match="seal the same bytes again"):
        s.set_legal_hold("acme", SEG1, True)
    s.seal("acme", SEG1, b"one", Retention(FAR_FUTURE_MS))
    assert s.read("acme", SEG1).retain_until_ms == FAR_FUTURE_MS


# -- s3:// --------------------------------------------------------------------------------


def test_s3_refuses_to_delete_a_locked_version(s3: S3Backend) -> None:
    from botocore.exceptions import ClientError

    s3.store.seal("acme", SEG1, b"sealed", Retention(FAR_FUTURE_MS))
    (version,) = s3.versions("acme", SEG1)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1), VersionId=version)
    assert s3.store.read("acme", SEG1).data == b"sealed"


def test_s3_an_overwrite_or_delete_only_adds_versions(s3: S3Backend) -> None:
    s3.store.seal("acme", SEG1, b"sealed", Retention(FAR_FUTURE_MS))
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1), Body=b"forged")
    got = s3.store.read("acme", SEG1)
    assert (got.data, got.extra_versions, got.retain_until_ms) == (b"sealed", 1, FAR_FUTURE_MS)
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1))  # a delete marker hides it from plain reads
    assert s3.store.names("acme") == [SEG1]
    assert s3.store.read("acme", SEG1).extra_versions == 2
    s3.store.seal("acme", SEG1, b"sealed", Retention(FAR_FUTURE_MS))  # still the sealed bytes: a no-op
    with pytest.raises(SegmentExists):
        s3.store.seal("acme", SEG1, b"forged", Retention(FAR_FUTURE_MS))
    assert s3.store.read("acme", SEG1).data == b"sealed"


def test_s3_purge_removes_every_version_of_an_expired_segment(s3: S3Backend) -> None:
    s3.store.seal("acme", SEG1, b"sealed", Retention(0))
    s3.client.put_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1), Body=b"forged")
    s3.client.delete_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1))
    assert s3.store.purge_expired("acme", int(time.time() * 1000)) == [SEG1]
    assert s3.versions("acme", SEG1) == [] and s3.store.names("acme") == []


def test_s3_a_held_segment_survives_purge_and_direct_deletion(s3: S3Backend) -> None:
    from botocore.exceptions import ClientError

    s3.store.seal("acme", SEG1, b"held", Retention(0))
    s3.store.set_legal_hold("acme", SEG1, True)
    assert s3.store.purge_expired("acme", FAR_FUTURE_MS) == []
    (version,) = s3.versions("acme", SEG1)
    with pytest.raises(ClientError, match="AccessDenied"):
        s3.client.delete_object(Bucket=s3.bucket, Key=s3.key("acme", SEG1), VersionId=version)
    assert s3.store.read("acme", SEG1).data == b"held"


def test_s3_a_bucket_without_object_lock_is_refused(s3_server: S3Server, s3_bucket: str) -> None:
    with pytest.raises(FailedPrecondition, match=f"bucket '{s3_bucket}' does not have S3 Object Lock enabled") as err:
        open_segment_store(f"s3://{s3_bucket}/audit?endpoint_url={s3_server.endpoint_url}")
    assert err.value.reason == "OBJECT_LOCK_DISABLED"
    with pytest.raises(FailedPrecondition, match="does not exist"):
        open_segment_store(f"s3://privtune-missing-{uuid.uuid4().hex[:8]}/audit?endpoint_url={s3_server.endpoint_url}")
