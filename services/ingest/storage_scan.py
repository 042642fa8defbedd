"""Hash what a dataset URI holds in tenant storage: the sha256 manifest of its objects.

Only sha256 digests, sizes and counts leave this module: never file contents. Where
the dataset may live (and what is refused) is decided by
``services.common.storage.resolve_dataset``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from services.common.storage import FileStorage, TenantStorage

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ScanResult:
    checksum_sha256: str  # sha256 over "relpath\\tsize\\tsha256\\n" lines in key order
    file_count: int
    total_bytes: int


def scan_dataset(storage: TenantStorage, prefix: str) -> ScanResult:
    """Hash every object of the dataset at ``prefix`` (a folder prefix ending in '/', or one object key).

    ``relpath`` is the key below the folder, or the object's name for a single object,
    so the same files give the same checksum wherever (and on whichever backend) they live.
    """
    manifest = hashlib.sha256()
    count = total = 0
    single = bool(prefix) and not prefix.endswith("/")
    base = prefix[:prefix.rfind("/") + 1] if single else prefix  # relpaths are relative to the folder
    for obj in storage.list(prefix):
        if single and obj.key != prefix:
            continue  # a single-object dataset: "a.txt" must not pick up "a.txt.bak"
        digest = hashlib.sha256()
        size = 0
        with storage.open(obj.key) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        count += 1
        total += size
        manifest.update(f"{obj.key[len(base):]}\t{size}\t{digest.hexdigest()}\n".encode())
    return ScanResult(manifest.hexdigest(), count, total)


def scan(path: Path) -> ScanResult:
    """Hash every regular file under the local folder ``path`` (or the file ``path`` itself)."""
    path = Path(path)
    if path.is_file():
        return scan_dataset(FileStorage(path.parent), path.name)
    return scan_dataset(FileStorage(path), "")
