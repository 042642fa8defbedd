"""Check a dataset URI against the tenant's storage boundary and hash what is there.

Only sha256 digests, sizes and counts leave this module: never file contents.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.common.errors import FailedPrecondition, InvalidArgument, PermissionDenied

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ScanResult:
    checksum_sha256: str  # sha256 over "relpath\\tsize\\tsha256\\n" lines in path order
    file_count: int
    total_bytes: int


def tenant_root(storage_root: Path, tenant_id: str) -> Path:
    """The folder that holds everything of one tenant."""
    return (storage_root / tenant_id).resolve()


def resolve_in_boundary(uri: str, storage_root: Path, tenant_id: str) -> Path:
    """Map ``file://`` URI to a path, refusing anything outside the tenant's folder.

    Raises:
        InvalidArgument: not a ``file://`` URI.
        PermissionDenied: the path (after resolving ``..`` and symlinks) leaves the boundary.
        FailedPrecondition: nothing exists at the path.
    """
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise InvalidArgument(
            f"storage_uri {uri!r}: only file:// tenant storage is supported by this deployment "
            "(s3:// arrives with the data-plane release)"
        )
    root = tenant_root(storage_root, tenant_id)
    path = Path(unquote(parts.path)).resolve()
    if path != root and root not in path.parents:
        raise PermissionDenied(
            f"storage_uri {uri!r} is outside the storage boundary of tenant {tenant_id!r}; "
            f"register data under file://{root}/"
        )
    if not path.exists():
        raise FailedPrecondition(f"nothing exists at {uri!r}; upload the files first, then register them")
    return path


def scan(path: Path) -> ScanResult:
    """Hash every regular file under ``path`` (or ``path`` itself), streaming."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    manifest = hashlib.sha256()
    total = 0
    base = path.parent if path.is_file() else path
    for file in files:
        digest = hashlib.sha256()
        size = 0
        with open(file, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        total += size
        rel = os.path.relpath(file, base)
        manifest.update(f"{rel}\t{size}\t{digest.hexdigest()}\n".encode())
    return ScanResult(manifest.hexdigest(), len(files), total)
