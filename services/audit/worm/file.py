"""Sealed audit segments in a local (or mounted) folder: ``file:///var/lib/privtune/audit/<tenant>/<name>``.

A segment is written to a hidden temporary file born read-only (0444), fsynced, then
hard-linked to its name, which fails if the name exists: of two writers only one can
win, and no reader ever sees a partial segment. The folder is fsynced after each
change. This code never opens a sealed file for writing again.

Retention and legal hold live in a read-only sidecar, ``<tenant>/.retention/<name>.json``,
and are enforced by this code only: a local file system cannot stop root (or anyone
with write access to the folder). The signed tree heads detect such tampering; S3
Object Lock (``s3://``) prevents it.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from services.audit.worm.protocol import (SEGMENT_NAME_RE, Retention, SegmentExists, SegmentRead,
                                          check_segment_name, check_tenant_id)
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.common.identity import is_tenant_id
from services.common.limits import quote

log = logging.getLogger(__name__)

SEALED_MODE = 0o444
TEMP_PREFIX = ".seal-"          # temporary files of seals in progress; never a segment name
RETENTION_FOLDER = ".retention"  # per-tenant sidecars: <name>.json


class FileSegmentStore:
    """Segments under ``root``, which need not exist yet (the first seal creates it)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.abspath(root))
        self.uri = self.root.as_uri().rstrip("/") + "/"

    def _folder(self, tenant_id: str) -> Path:
        return self.root / check_tenant_id(tenant_id)

    def _sidecar(self, tenant_id: str, name: str) -> Path:
        return self._folder(tenant_id) / RETENTION_FOLDER / f"{check_segment_name(name)}.json"

    # -- writing --------------------------------------------------------------------------

    def seal(self, tenant_id: str, name: str, data: bytes, retention: Retention) -> None:
        folder = self._folder(tenant_id)
        path = folder / check_segment_name(name)
        _make_folder(folder)
        if not path.exists() and _link_new(folder, path, data):
            self._write_sidecar(tenant_id, name, retention)
            return
        if path.read_bytes() != data:
            raise SegmentExists(f"segment {quote(name)} of tenant {tenant_id!r} is already sealed with different "
                                "content; sealed segments are never overwritten, seal the records under a new name")
        if not self._sidecar(tenant_id, name).exists():  # a crash came between the segment and its sidecar
            self._write_sidecar(tenant_id, name, retention)

    def _write_sidecar(self, tenant_id: str, name: str, retention: Retention) -> None:
        sidecar = self._sidecar(tenant_id, name)
        _make_folder(sidecar.parent)
        body = json.dumps({"retain_until_ms": retention.retain_until_ms, "legal_hold": retention.legal_hold})
        tmp = sidecar.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            _write_read_only(tmp, body.encode())
            os.replace(tmp, sidecar)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_folder(sidecar.parent)

    def _retention(self, tenant_id: str, name: str) -> Retention | None:
        """The segment's recorded retention, or None when a crash left it without one."""
        try:
            record = json.loads(self._sidecar(tenant_id, name).read_bytes())
        except FileNotFoundError:
            return None
        return Retention(int(record["retain_until_ms"]), bool(record["legal_hold"]))

    def set_legal_hold(self, tenant_id: str, name: str, on: bool) -> None:
        self._path(tenant_id, name)
        retention = self._retention(tenant_id, name)
        if retention is None:
            raise FailedPrecondition(f"segment {quote(name)} of tenant {tenant_id!r} has no retention record (its "
                                     "seal was interrupted); seal the same bytes again, then set the legal hold")
        self._write_sidecar(tenant_id, name, Retention(retention.retain_until_ms, on))

    def purge_expired(self, tenant_id: str, now_ms: int) -> list[str]:
        purged = []
        for name in self.names(tenant_id):
            retention = self._retention(tenant_id, name)
            if retention is None:
                log.warning("keeping audit segment %s/%s: it has no retention record", tenant_id, name)
                continue
            if retention.legal_hold or retention.retain_until_ms > now_ms:
                continue
            (self._folder(tenant_id) / name).unlink()
            self._sidecar(tenant_id, name).unlink(missing_ok=True)
            purged.append(name)
        if purged:
            _fsync_folder(self._folder(tenant_id))
            _fsync_folder(self._folder(tenant_id) / RETENTION_FOLDER)
        return purged

    # -- reading --------------------------------------------------------------------------

    def _path(self, tenant_id: str, name: str) -> Path:
        path = self._folder(tenant_id) / check_segment_name(name)
        if not path.is_file():
            raise NotFound(f"no audit segment {quote(name)} for tenant {tenant_id!r}; list the tenant's segments "
                           "to see what is sealed")
        return path

    def read(self, tenant_id: str, name: str) -> SegmentRead:
        data = self._path(tenant_id, name).read_bytes()
        retention = self._retention(tenant_id, name) or Retention(0)
        return SegmentRead(data, 0, retention.retain_until_ms, retention.legal_hold)

    def names(self, tenant_id: str) -> list[str]:
        try:
            entries = os.scandir(self._folder(tenant_id))
        except FileNotFoundError:
            return []
        with entries:
            return sorted(e.name for e in entries
                          if e.is_file(follow_symlinks=False) and SEGMENT_NAME_RE.fullmatch(e.name))

    def tenants(self) -> list[str]:
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        with entries:
            return sorted(e.name for e in entries if e.is_dir(follow_symlinks=False) and is_tenant_id(e.name))


def _make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) durably if it does not exist."""
    if folder.is_dir():
        return
    _make_folder(folder.parent)
    try:
        folder.mkdir()
    except FileExistsError:
        return
    _fsync_folder(folder.parent)


def _write_read_only(path: Path, data: bytes) -> None:
    """Create ``path`` read-only (0444), write ``data`` and fsync it; fails if ``path`` exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SEALED_MODE)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, SEALED_MODE)  # the umask may have cleared bits; never added any


def _link_new(folder: Path, path: Path, data: bytes) -> bool:
    """Make ``path`` a durable, read-only file holding ``data``; False (and no change) if it exists."""
    tmp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    try:
        _write_read_only(tmp, data)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(folder)
    return True


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_file_segment_store(uri: str) -> FileSegmentStore:
    """Registry factory: ``file:///abs/path`` (no options)."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise InvalidArgument(f"{quote(uri)} is not a file:///absolute/path URI for the audit segment store")
    if parts.query:
        raise InvalidArgument(f"the file:// audit segment store takes no options; remove ?{quote(parts.query)}")
    return FileSegmentStore(unquote(parts.path))
