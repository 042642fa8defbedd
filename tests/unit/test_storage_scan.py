from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.common.storage import FileStorage, resolve_dataset
from services.ingest import storage_scan

pytestmark = pytest.mark.unit


def _manifest(entries: list[tuple[str, bytes]]) -> str:
    lines = "".join(f"{rel}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n" for rel, data in entries)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_scan_hashes_a_manifest_of_files(tmp_path: Path) -> None:
    root = tmp_path / "acme" / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"beta!")
    result = storage_scan.scan(root)
    assert result == storage_scan.ScanResult(_manifest([("a.txt", b"alpha"), ("sub/b.txt", b"beta!")]), 2, 10)
    assert storage_scan.scan(root / "a.txt") == storage_scan.ScanResult(_manifest([("a.txt", b"alpha")]), 1, 5)


def test_scan_dataset_is_relative_to_the_dataset_and_ignores_neighbours(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "acme")
    storage.write("docs/a.txt", b"alpha")
    storage.write("docs/a.txt.bak", b"old")
    storage.write("docs2/c.txt", b"other folder")
    folder = storage_scan.scan_dataset(storage, "docs/")
    assert folder == storage_scan.ScanResult(_manifest([("a.txt", b"alpha"), ("a.txt.bak", b"old")]), 2, 8)
    single = storage_scan.scan_dataset(storage, "docs/a.txt")
    assert single == storage_scan.ScanResult(_manifest([("a.txt", b"alpha")]), 1, 5)


def test_boundary_refuses_other_tenants_and_escapes(tmp_path: Path) -> None:
    (tmp_path / "acme" / "docs").mkdir(parents=True)
    (tmp_path / "acme" / "docs" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "globex" / "secret").mkdir(parents=True)
    (tmp_path / "globex" / "secret" / "s.txt").write_bytes(b"payroll")
    (tmp_path / "acme" / "link").symlink_to(tmp_path / "globex" / "secret")
    root = f"file://{tmp_path}"
    storage, prefix = resolve_dataset(f"file://{tmp_path}/acme/docs", root, "acme")
    assert prefix == "docs/" and storage.uri == (tmp_path / "acme").resolve().as_uri() + "/"
    assert resolve_dataset(f"file://{tmp_path}/acme/docs/a.txt", tmp_path, "acme")[1] == "docs/a.txt"
    for uri in (f"file://{tmp_path}/globex/secret", f"file://{tmp_path}/acme/../globex/secret",
                f"file://{tmp_path}/acme/link", f"file://{tmp_path}/acme/link/s.txt", "file:///etc",
                "s3://bucket/acme/docs"):
        with pytest.raises(PermissionDenied, match="outside the tenant's storage"):
            resolve_dataset(uri, root, "acme")
    with pytest.raises(InvalidArgument, match="not supported"):
        resolve_dataset("http://example.com/x", root, "acme")
    with pytest.raises(FailedPrecondition, match="nothing exists"):
        resolve_dataset(f"file://{tmp_path}/acme/missing", root, "acme")
