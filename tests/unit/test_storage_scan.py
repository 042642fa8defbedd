from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from services.ingest import storage_scan

pytestmark = pytest.mark.unit


def test_scan_hashes_a_manifest_of_files(tmp_path: Path) -> None:
    root = tmp_path / "acme" / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.txt").write_bytes(b"beta!")
    result = storage_scan.scan(root)
    lines = "".join(f"{rel}\t{len(data)}\t{hashlib.sha256(data).hexdigest()}\n"
                    for rel, data in [("a.txt", b"alpha"), ("sub/b.txt", b"beta!")])
    assert result == storage_scan.ScanResult(hashlib.sha256(lines.encode()).hexdigest(), 2, 10)


def test_boundary_refuses_other_tenants_and_escapes(tmp_path: Path) -> None:
    (tmp_path / "acme" / "docs").mkdir(parents=True)
    (tmp_path / "globex" / "secret").mkdir(parents=True)
    (tmp_path / "acme" / "link").symlink_to(tmp_path / "globex" / "secret")
    ok = storage_scan.resolve_in_boundary(f"file://{tmp_path}/acme/docs", tmp_path, "acme")
    assert ok == (tmp_path / "acme" / "docs").resolve()
    for uri in (f"file://{tmp_path}/globex/secret", f"file://{tmp_path}/acme/../globex/secret",
                f"file://{tmp_path}/acme/link", "file:///etc"):
        with pytest.raises(PermissionDenied, match="outside the storage boundary"):
            storage_scan.resolve_in_boundary(uri, tmp_path, "acme")
    with pytest.raises(InvalidArgument, match="only file://"):
        storage_scan.resolve_in_boundary("http://example.com/x", tmp_path, "acme")
    with pytest.raises(FailedPrecondition, match="nothing exists"):
        storage_scan.resolve_in_boundary(f"file://{tmp_path}/acme/missing", tmp_path, "acme")
