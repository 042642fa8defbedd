"""Hash what a dataset URI holds in tenant storage: the sha256 manifest of its objects.

Only sha256 digests, sizes and counts leave this module: never file contents. Where
the dataset may live (and what is refused) is decided by
``services.common.storage.resolve_dataset``.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from services.common.storage import FileStorage, ObjectInfo, TenantStorage, list_entries

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ScanResult:
    checksum_sha256: str  # sha256 over "relpath\\tsize\\tsha256\\n" lines in key order
    file_count: int
    total_bytes: int
    rejected: int = 0     # entries not hashed and never read: symlinks, pipes (curation quarantines each one)


def scan_dataset(storage: TenantStorage, prefix: str) -> ScanResult:
    """Hash every object of the dataset at ``prefix`` (a folder prefix ending in '/', or one object key).

    ``relpath`` is the key below the folder, or the object's name for a single object,
    so the same files give the same checksum wherever (and on whichever backend) they live.
    """
    manifest = hashlib.sha256()
    count = total = 0
    single = bool(prefix) and not prefix.endswith("/")
    base = prefix[:prefix.rfind("/") + 1] if single else prefix  # relpaths are relative to the folder
    rejected = 0
    for obj in list_entries(storage, prefix):
        if single and obj.key != prefix:
            continue  # a single-object dataset: "a.txt" must not pick up "a.txt.bak"
        if not isinstance(obj, ObjectInfo):
            rejected += 1
            continue
        digest = hashlib.sha256()
        size = 0
        with storage.open(obj.key) as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
        count += 1
        total += size
        manifest.update(f"{obj.key[len(base):]}\t{size}\t{digest.hexdigest()}\n".encode())
    if rejected:
        log.warning("dataset scan skipped %d entries that are not regular files inside the tenant's storage "
                    "(symlinks, pipes); curation lists each one as quarantined", rejected)
    return ScanResult(manifest.hexdigest(), count, total, rejected)


def scan(path: Path) -> ScanResult:
    """Hash every regular file under the local folder ``path`` (or the file ``path`` itself)."""
    path = Path(path)
    if path.is_file():
        return scan_dataset(FileStorage(path.parent), path.name)
    return scan_dataset(FileStorage(path), "")
