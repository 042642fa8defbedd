"""The tenant storage contract: every backend (local folder, S3 API) passes the same tests."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.storage import TenantStorage, open_tenant_storage, resolve_dataset
from services.common.storage.file import PARTIAL_SUFFIX
from tests.s3_fixtures import S3Server

pytestmark = pytest.mark.contract

MIB = 1 << 20


@dataclass
class Backend:
    kind: str
    root: str                          # the storage root tenants live under
    storage: TenantStorage             # tenant "acme"
    leftovers: Callable[[], list[str]]  # traces of unfinished writes (temp files, open multipart uploads)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "file":
        root = f"file://{tmp_path}/tenants"

        def leftovers() -> list[str]:
            return [name for _, _, files in os.walk(tmp_path) for name in files if name.endswith(PARTIAL_SUFFIX)]
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        root = server.root_uri(bucket)

        def leftovers() -> list[str]:
            uploads = server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return [u["Key"] for u in uploads]
    yield Backend(request.param, root, open_tenant_storage(root, "acme"), leftovers)


def _chunks(n: int, size: int = MIB) -> Iterator[bytes]:
    """``n`` chunks of distinct content, generated on the fly."""
    for i in range(n):
        yield hashlib.sha256(str(i).encode()).digest() * (size // 32)


def test_write_returns_the_sha256_and_reads_back(backend: Backend) -> None:
    s = backend.storage
    assert s.uri.endswith("/acme/")
    assert s.write("docs/a.txt", b"alpha") == hashlib.sha256(b"alpha").hexdigest()
    assert s.write("docs/b.txt", iter([b"be", b"", b"ta"])) == hashlib.sha256(b"beta").hexdigest()
    assert s.write("empty.txt", b"") == hashlib.sha256(b"").hexdigest()
    with s.open("docs/a.txt") as fh:
        assert fh.read() == b"alpha"
    with s.open("docs/b.txt") as fh:
        assert fh.read() == b"beta"
    with s.open("empty.txt") as fh:
        assert fh.read() == b""
    assert s.exists("docs/a.txt") and not s.exists("docs") and not s.exists("docs/missing.txt")
    s.write("docs/a.txt", b"alpha v2")
    with s.open("docs/a.txt") as fh:
        assert fh.read() == b"alpha v2"
    assert s.uri_for("docs/a.txt") == s.uri + "docs/a.txt"
    assert s.key_for(s.uri_for("docs/a.txt")) == "docs/a.txt"
    assert s.key_for(s.uri) == ""
    with pytest.raises(NotFound, match=r"missing\.txt"):
        s.open("docs/missing.txt")


def test_readers_seek_like_files(backend: Backend) -> None:
    s = backend.storage
    data = bytes(range(256)) * 1024
    s.write("blob.bin", data)
    with s.open("blob.bin") as fh:
        assert fh.seekable()
        fh.seek(-10, io.SEEK_END)
        assert fh.read() == data[-10:]
        fh.seek(1000)
        assert fh.read(24) == data[1000:1024] and fh.tell() == 1024
        fh.seek(0)
        assert fh.read(3) == data[:3]


def test_a_large_object_streams_both_ways_in_bounded_memory(backend: Backend) -> None:
    s = backend.storage
    size = 20 * MIB
    expected = hashlib.sha256()
    for chunk in _chunks(20):
        expected.update(chunk)
    tracemalloc.start()
    try:
        assert s.write("big/blob.bin", _chunks(20)) == expected.hexdigest()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        got = hashlib.sha256()
        with s.open("big/blob.bin") as fh:
            while chunk := fh.read(MIB):
                got.update(chunk)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.hexdigest() == expected.hexdigest()
    assert [o.size for o in s.list("big/")] == [size]
    assert write_peak < size, f"write held {write_peak / MIB:.1f} MiB of a {size / MIB:.0f} MiB object"
    assert read_peak < 8 * MIB, f"read held {read_peak / MIB:.1f} MiB"


def test_list_is_sorted_recursive_and_filtered_by_prefix(backend: Backend) -> None:
    s = backend.storage
    keys = ["docs/x.txt", "a/z.txt", "a-b.txt", "a/b/c.txt", "docs2/y.txt", "a.txt", "docs/sub/deep/w.txt"]
    for i, key in enumerate(keys):
        s.write(key, b"x" * i)
    listed = list(s.list())
    assert [o.key for o in listed] == sorted(keys)
    assert {o.key: o.size for o in listed} == {k: i for i, k in enumerate(keys)}
    assert [o.key for o in s.list("a/")] == ["a/b/c.txt", "a/z.txt"]
    assert [o.key for o in s.list("docs/")] == ["docs/sub/deep/w.txt", "docs/x.txt"]
    assert [o.key for o in s.list("docs")] == ["docs/sub/deep/w.txt", "docs/x.txt", "docs2/y.txt"]
    assert [o.key for o in s.list("a.txt")] == ["a.txt"]
    assert list(s.list("nothing/")) == []


def _failing(chunks: Iterator[bytes], after: int) -> Iterator[bytes]:
    for i, chunk in enumerate(chunks):
        if i == after:
            raise ConnectionError("source went away")
        yield chunk


@pytest.mark.parametrize("chunks_before_failure", [2, 12], ids=["small", "multipart"])
def test_a_failed_write_leaves_no_partial_object(backend: Backend, chunks_before_failure: int) -> None:
    s = backend.storage
    with pytest.raises(ConnectionError):
        s.write("new.bin", _failing(_chunks(20), after=chunks_before_failure))
    assert not s.exists("new.bin") and list(s.list()) == []
    s.write("old.bin", b"previous version")
    with pytest.raises(ConnectionError):
        s.write("old.bin", _failing(_chunks(20), after=chunks_before_failure))
    with s.open("old.bin") as fh:
        assert fh.read() == b"previous version"
    assert [o.key for o in s.list()] == ["old.bin"]
    assert backend.leftovers() == []


@pytest.mark.parametrize("key", ["", "../globex/secret.txt", "/etc/passwd", "a/../../b", "a//b", "./a", "a/./b",
                                 "dir/", "a\\..\\b", "nul\0byte"])
def test_keys_that_could_escape_or_are_malformed_are_refused(backend: Backend, key: str) -> None:
    s = backend.storage
    for attempt in (lambda: s.write(key, b"x"), lambda: s.open(key), lambda: s.exists(key),
                    lambda: s.uri_for(key)):
        with pytest.raises(InvalidArgument, match="key"):
            attempt()
    assert list(s.list()) == []


def test_prefixes_are_validated_too(backend: Backend) -> None:
    for prefix in ("../", "/", "a/../", "a//"):
        with pytest.raises(InvalidArgument, match="prefix"):
            list(backend.storage.list(prefix))


def test_dataset_uris_outside_the_tenant_are_refused(backend: Backend) -> None:
    s = backend.storage
    s.write("docs/a.txt", b"alpha")
    globex = open_tenant_storage(backend.root, "globex")
    globex.write("payroll/p.txt", b"salaries")
    open_tenant_storage(backend.root, "acme-corp").write("docs/a.txt", b"look-alike tenant")
    assert resolve_dataset(s.uri + "docs", backend.root, "acme")[1] == "docs/"
    assert resolve_dataset(s.uri + "docs/", backend.root, "acme")[1] == "docs/"
    assert resolve_dataset(s.uri + "docs/a.txt", backend.root, "acme")[1] == "docs/a.txt"
    assert resolve_dataset(s.uri, backend.root, "acme")[1] == ""
    other_scheme = "s3://bucket/tenants/acme/docs" if backend.kind == "file" else "file:///tmp/tenants/acme/docs"
    outside = [globex.uri + "payroll", globex.uri + "payroll/p.txt", s.uri + "../globex/payroll",
               s.uri + "docs/../../globex/payroll", s.uri.replace("/acme/", "/acme-corp/") + "docs",
               s.uri.rstrip("/").rsplit("/", 1)[0] + "/", other_scheme]
    if backend.kind == "s3":
        outside.append(s.uri.replace("s3://", "s3://another-bucket-", 1) + "docs")
    for uri in outside:
        with pytest.raises(PermissionDenied, match="outside the tenant's storage"):
            resolve_dataset(uri, backend.root, "acme")
    with pytest.raises(InvalidArgument, match="not supported"):
        resolve_dataset("ftp://example.com/acme/docs", backend.root, "acme")
    with pytest.raises(FailedPrecondition, match="nothing exists"):
        resolve_dataset(s.uri + "missing", backend.root, "acme")
    with pytest.raises(InvalidArgument, match="tenant id"):
        open_tenant_storage(backend.root, "../globex")


def test_symlinks_cannot_lead_out_of_a_folder(tmp_path: Path) -> None:
    root = f"file://{tmp_path}"
    acme = open_tenant_storage(root, "acme")
    acme.write("docs/a.txt", b"alpha")
    globex = open_tenant_storage(root, "globex")
    globex.write("secret/s.txt", b"salaries")
    (tmp_path / "acme" / "link").symlink_to(tmp_path / "globex" / "secret")
    (tmp_path / "acme" / "docs" / "s.txt").symlink_to(tmp_path / "globex" / "secret" / "s.txt")
    assert [o.key for o in acme.list()] == ["docs/a.txt"]
    for key in ("link/s.txt", "docs/s.txt"):
        with pytest.raises(PermissionDenied, match="outside the tenant's storage"):
            acme.open(key)
        with pytest.raises(PermissionDenied):
            acme.write(key, b"overwrite")
    with pytest.raises(PermissionDenied, match="outside the tenant's storage"):
        acme.write("link/new.txt", b"plant")
    assert not (tmp_path / "globex" / "secret" / "new.txt").exists()
    with pytest.raises(PermissionDenied, match="outside the tenant's storage"):
        resolve_dataset(f"{acme.uri}link", root, "acme")


def test_a_file_swapped_for_a_symlink_while_being_opened_is_never_followed(tmp_path: Path) -> None:
    """The attacker's race: flip an object between a file and a symlink to another tenant's file while
    opening it, many times. Every open reads the tenant's own bytes or is refused; none leaks."""
    import threading

    root = f"file://{tmp_path}"
    acme = open_tenant_storage(root, "acme")
    acme.write("d/a.txt", b"own text")
    open_tenant_storage(root, "globex").write("s.txt", b"GLOBEX SECRET")
    path, secret = tmp_path / "acme" / "d" / "a.txt", tmp_path / "globex" / "s.txt"
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            link, copy = path.with_suffix(".l"), path.with_suffix(".f")
            link.symlink_to(secret)
            link.replace(path)
            copy.write_bytes(b"own text")
            copy.replace(path)

    flipper = threading.Thread(target=flip)
    flipper.start()
    read = refused = 0
    try:
        while read < 200 or refused < 200:
            try:
                with acme.open("d/a.txt") as fh:
                    assert fh.read() == b"own text"
                read += 1
            except (PermissionDenied, NotFound):
                refused += 1
    finally:
        stop.set()
        flipper.join()


def test_parsers_read_zip_and_pdf_objects_through_the_backend(backend: Backend) -> None:
    from fpdf import FPDF

    from services.curation.documents import Document
    from services.curation.parsers import parse_object

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in ("First page text.", "Second page text."):
        pdf.add_page()
        pdf.multi_cell(0, 10, text)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.jsonl", b'{"prompt": "p", "completion": "c"}\n')
        zf.writestr("manual.pdf", bytes(pdf.output()))
    backend.storage.write("ds/bundle.zip", buf.getvalue())
    got = list(parse_object(backend.storage, "ds/bundle.zip", root="ds/"))
    assert all(isinstance(item, Document) for item in got)
    assert [(d.provenance.source, d.provenance.member, d.provenance.page) for d in got] == [
        ("bundle.zip", "a.jsonl", 0), ("bundle.zip", "manual.pdf", 1), ("bundle.zip", "manual.pdf", 2)]


def test_large_bytes_are_written_whole(backend: Backend) -> None:
    payload = b"".join(_chunks(12))  # above the S3 part size: a multipart upload there
    assert backend.storage.write("big/bytes.bin", payload) == hashlib.sha256(payload).hexdigest()
    with backend.storage.open("big/bytes.bin") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_the_dataset_manifest_hash_does_not_depend_on_the_backend(backend: Backend) -> None:
    from services.ingest.storage_scan import ScanResult, scan_dataset

    files = {"docs/a.txt": b"alpha", "docs/sub/b.txt": b"beta!", "docs-old/c.txt": b"not in the dataset"}
    for key, data in files.items():
        backend.storage.write(key, data)
    storage, prefix = resolve_dataset(backend.storage.uri + "docs", backend.root, "acme")
    lines = "".join(f"{rel}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n"
                    for rel, data in [("a.txt", b"alpha"), ("sub/b.txt", b"beta!")])
    assert scan_dataset(storage, prefix) == ScanResult(hashlib.sha256(lines.encode()).hexdigest(), 2, 10)


def test_deleted_objects_are_gone_and_deleting_twice_is_fine(backend: Backend) -> None:
    s = backend.storage
    s.write("ckpt/step-1/a.bin", b"a")
    s.write("ckpt/step-2/a.bin", b"b")
    s.delete("ckpt/step-1/a.bin")
    s.delete("ckpt/step-1/a.bin")
    assert not s.exists("ckpt/step-1/a.bin")
    assert [o.key for o in s.list("ckpt/")] == ["ckpt/step-2/a.bin"]
    with pytest.raises(InvalidArgument):
        s.delete("../other-tenant/secret")
