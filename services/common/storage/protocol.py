"""What every tenant storage backend provides (tests/contract/test_tenant_storage_contract.py checks it).

A ``TenantStorage`` is one tenant's corner of the object store: every key is relative
to its root URI, and nothing outside that root can be named, listed, read or written.
Keys are ``/``-separated relative paths without ``.``/``..`` segments (see keys.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object: its key relative to the tenant's root, and its size in bytes."""

    key: str
    size: int


@dataclass(frozen=True)
class RejectedEntry:
    """Something stored under the listed prefix that is not an object and is never opened or followed.

    ``code`` is ``outside_boundary`` (a symlink leading out of the tenant's root),
    ``symlink`` (one leading elsewhere inside it) or ``not_a_file`` (a FIFO, socket or
    device); ``reason`` says what to do, never where a link points.
    """

    key: str
    code: str
    reason: str


class TenantStorage(Protocol):
    """One tenant's objects; private bytes stay behind this interface."""

    uri: str  # root URI with a trailing slash, e.g. file:///data/tenants/acme/ or s3://bucket/prefix/acme/

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (a plain string prefix), recursively, sorted by key.

        Use ``"docs/"`` for a folder: ``"docs"`` also matches ``docs2/x``.
        """
        ...

    def open(self, key: str) -> BinaryIO:
        """A streaming, seekable reader of the object. Raises ``NotFound`` if there is none."""
        ...

    def write(self, key: str, data: bytes | Iterable[bytes]) -> str:
        """Store ``data`` under ``key`` atomically and return its sha256 hex digest.

        Readers see the old object or the new one, never a partial one; if ``data``
        raises midway nothing changes.
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether an object (not a folder) is stored under exactly ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object ``key``; deleting a missing object is not an error."""
        ...

    def uri_for(self, key: str) -> str:
        """The absolute URI of ``key``, for events and reports (``key_for`` is its inverse)."""
        ...

    def key_for(self, uri: str) -> str:
        """The key (or key prefix) named by an absolute ``uri`` inside this storage.

        Raises:
            PermissionDenied: ``uri`` is outside this tenant's root (another tenant,
                bucket or scheme, a ``..`` segment, a symlink leading out).
        """
        ...


def list_entries(storage: TenantStorage, prefix: str = "") -> Iterator[ObjectInfo | RejectedEntry]:
    """``storage.list(prefix)`` plus, in key order, the entries it skips (a backend with ``list_entries``).

    A caller that must account for everything under a prefix (curation, ingest's scan)
    uses this; only file storage has entries to reject (symlinks), so other backends
    need not implement ``list_entries``.
    """
    entries = getattr(storage, "list_entries", None)
    return entries(prefix) if callable(entries) else iter(storage.list(prefix))
