"""Tenant storage in a local (or mounted) folder: ``file:///data/tenants/<tenant>/``.

Writes go to a temporary file beside the target, are fsynced, then renamed over it,
so a reader sees the old object or the new one. Symlinks are never listed or followed
(``list_entries`` reports them as rejected entries), and a key or URI whose real path
leaves the tenant's folder is refused.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import uuid
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator
from urllib.parse import quote, unquote, urlsplit

from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.common import limits
from services.common.storage.keys import has_dot_segment, validate_key, validate_prefix
from services.common.storage.protocol import ObjectInfo, RejectedEntry

PARTIAL_SUFFIX = ".privtune-partial"  # temporary files of writes in progress; never listed
_SLASHES = re.compile(r"/{2,}")


def _chunks_of(data: bytes | Iterable[bytes]) -> Iterable[bytes | bytearray | memoryview]:
    return (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data


class FileStorage:
    """One tenant's folder. ``root`` need not exist yet; writes create it."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(os.path.realpath(root))
        self.uri = self.root.as_uri().rstrip("/") + "/"
        # URIs may name the root as configured or as resolved (when it lies under a symlink)
        self._roots = tuple(dict.fromkeys((str(self.root).rstrip("/"), os.path.abspath(root).rstrip("/"))))

    # -- boundary -------------------------------------------------------------------

    def _inside(self, path: str) -> bool:
        """Whether ``path`` (of bounded length: a validated key below the root) really lies inside the root."""
        return self._below_root(os.path.realpath(path))

    def _below_root(self, real: str) -> bool:
        root = str(self.root)
        return real == root or real.startswith(root.rstrip("/") + "/")

    def _path(self, key: str) -> str:
        path = os.path.join(self.root, *validate_key(key).split("/"))
        if not self._inside(path):
            raise PermissionDenied(f"object key {limits.quote(key)} leads outside the tenant's storage (through a "
                                   "symlink); store the data inside the tenant's folder", reason="OUTSIDE_TENANT_STORAGE")
        return path

    def _relative(self, path: str) -> str | None:
        """The part of ``path`` below the root, by comparing strings only (no file system access), or None."""
        path = _SLASHES.sub("/", path).rstrip("/")
        for root in self._roots:
            if path == root:
                return ""
            if path.startswith(root + "/"):
                return path[len(root) + 1:]
        return None

    def key_for(self, uri: str) -> str:
        # Linear in the URI: lexical checks first, so os.path.realpath (one lstat per path prefix)
        # only ever sees a path within the key length limit, and never one outside the root.
        parts = urlsplit(uri)
        path = unquote(parts.path)
        outside = PermissionDenied(f"storage_uri {limits.quote(uri)} is outside the tenant's storage; register data "
                                   "inside the tenant's own storage folder", reason="OUTSIDE_TENANT_STORAGE")
        if parts.scheme != "file" or parts.netloc not in ("", "localhost") or has_dot_segment(path):
            raise outside
        relative = self._relative(path)
        if relative is None:
            raise outside
        if relative:
            validate_prefix(relative)
        real = os.path.realpath(os.path.join(self.root, relative)) if relative else str(self.root)
        if not self._below_root(real):
            raise outside
        key = os.path.relpath(real, self.root).replace(os.sep, "/")
        if key == ".":
            return ""
        return f"{key}/" if path.endswith("/") or os.path.isdir(real) else key

    def uri_for(self, key: str) -> str:
        return self.uri + quote(validate_key(key))

    # -- reading ----------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        return (entry for entry in self.list_entries(prefix) if isinstance(entry, ObjectInfo))

    def list_entries(self, prefix: str = "") -> Iterator[ObjectInfo | RejectedEntry]:
        """Objects and, in key order among them, what ``list`` skips: symlinks (never followed) and
        entries that are not regular files, so a caller can report them instead of losing them silently."""
        validate_prefix(prefix)
        yield from self._walk(str(self.root), "", prefix)

    def _walk(self, folder: str, folder_key: str, prefix: str) -> Iterator[ObjectInfo | RejectedEntry]:
        try:
            with os.scandir(folder) as it:
                entries = [e for e in it if not e.name.endswith(PARTIAL_SUFFIX)]
        except (FileNotFoundError, NotADirectoryError):
            return
        # Sorting a folder's entries by "name/" for sub-folders yields keys in global string order.
        for entry, is_dir in sorted(((e, e.is_dir(follow_symlinks=False)) for e in entries),
                                    key=lambda pair: pair[0].name + ("/" if pair[1] else "")):
            key = folder_key + entry.name
            if is_dir:
                sub = key + "/"
                if sub.startswith(prefix) or prefix.startswith(sub):
                    yield from self._walk(entry.path, sub, prefix)
            elif not key.startswith(prefix):
                continue
            elif entry.is_symlink():
                yield self._rejected_link(entry.path, key)
            elif entry.is_file(follow_symlinks=False):
                yield ObjectInfo(key, entry.stat(follow_symlinks=False).st_size)
            else:
                yield RejectedEntry(key, "not_a_file", "this is not a regular file (a pipe, socket or device) and "
                                                       "was not read; store the data as a regular file")

    def _rejected_link(self, path: str, key: str) -> RejectedEntry:
        """A symlink, by where it leads (resolved by name only: its target is never opened or read)."""
        if not self._inside(path):
            return RejectedEntry(key, "outside_boundary", "this is a symlink leading outside the tenant's storage; "
                                                          "it was not followed: copy the data into the tenant's "
                                                          "folder instead")
        return RejectedEntry(key, "symlink", "this is a symlink; symlinks are never followed (the file it leads "
                                             "to is read under its own name if it is part of the dataset); "
                                             "copy the file here instead")

    def open(self, key: str) -> BinaryIO:
        """The object's bytes, opened without following any symlink on the way.

        Checking the path first and opening it after would race with a rename: a file
        swapped for a symlink in between would be followed out of the tenant's folder.
        So the folders are opened one by one from the root and the file last, each with
        ``O_NOFOLLOW``, and only a regular file is accepted (a FIFO would hang the reader).

        Raises:
            NotFound: no regular file at ``key``.
            PermissionDenied: reason OUTSIDE_TENANT_STORAGE, a symlink is on the way.
        """
        parts = validate_key(key).split("/")   # no resolving here: a path checked, then opened, can change between
        try:
            fd = self._open_beneath(parts)
        except FileNotFoundError:
            raise NotFound(f"no object {limits.quote(key)} in the tenant's storage; list the storage to see what is "
                           "there") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise PermissionDenied(f"object key {limits.quote(key)} is or passes through a symlink, which could "
                                       "lead outside the tenant's storage and is never followed; store the data "
                                       "itself inside the tenant's folder", reason="OUTSIDE_TENANT_STORAGE") from None
            raise
        return os.fdopen(fd, "rb")

    def _open_beneath(self, parts: list[str]) -> int:
        directory = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=directory)
                os.close(directory)
                directory = inner
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
        finally:
            os.close(directory)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(parts[-1])
        os.set_blocking(fd, True)
        return fd

    def exists(self, key: str) -> bool:
        path = self._path(key)
        return os.path.isfile(path) and not os.path.islink(path)

    # -- writing ----------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self._path(key)
        if os.path.islink(path) or os.path.isdir(path):
            raise InvalidArgument(f"{limits.quote(key)} is not an object; delete objects one by one")
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        _fsync_folder(os.path.dirname(path))

    def write(self, key: str, data: bytes | Iterable[bytes]) -> str:
        path = self._path(key)
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}{PARTIAL_SUFFIX}")
        digest = hashlib.sha256()
        try:
            with open(tmp, "xb") as fh:
                for chunk in _chunks_of(data):
                    digest.update(chunk)
                    fh.write(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        _fsync_folder(folder)
        return digest.hexdigest()


def _fsync_folder(folder: str) -> None:
    """Make the rename durable (a crash after write() returns keeps the new object)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_file_storage(root_uri: str) -> FileStorage:
    """Registry factory: ``file:///abs/path/<tenant>/`` -> ``FileStorage``."""
    return FileStorage(unquote(urlsplit(root_uri).path))
