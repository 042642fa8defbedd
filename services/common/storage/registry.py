"""Open a tenant's storage by URI scheme, and map dataset URIs into it (or refuse them).

Backends register a factory per scheme; the built-in ones are imported on first use,
so a ``file://`` deployment never imports boto3.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit, urlunsplit

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.identity import is_tenant_id
from services.common.limits import quote
from services.common.storage.protocol import TenantStorage

_FACTORIES: dict[str, Callable[[str], TenantStorage]] = {}
_BUILTIN: dict[str, tuple[str, str]] = {
    "file": ("services.common.storage.file", "open_file_storage"),
    "s3": ("services.common.storage.s3", "open_s3_storage"),
}


def register_backend(scheme: str, factory: Callable[[str], TenantStorage]) -> None:
    """Make ``open_tenant_storage`` build ``factory(tenant_root_uri)`` for URIs of this scheme."""
    _FACTORIES[scheme] = factory


def _factory(scheme: str) -> Callable[[str], TenantStorage] | None:
    if scheme not in _FACTORIES and scheme in _BUILTIN:
        module, name = _BUILTIN[scheme]
        register_backend(scheme, getattr(importlib.import_module(module), name))
    return _FACTORIES.get(scheme)


def supported_schemes() -> list[str]:
    return sorted(set(_FACTORIES) | set(_BUILTIN))


def as_storage_uri(root: str | os.PathLike[str]) -> str:
    """The storage root as a URI: a folder (``Path`` or plain string) becomes ``file:///abs/path``."""
    if isinstance(root, os.PathLike) or "://" not in root:
        return Path(root).absolute().as_uri()
    return root


def tenant_root_uri(storage_root: str | os.PathLike[str], tenant_id: str) -> str:
    """``<root>/<tenant_id>/``, keeping the root's query options (e.g. ``?endpoint_url=``)."""
    if not is_tenant_id(tenant_id):
        raise InvalidArgument(f"tenant id {tenant_id!r} is not valid (lowercase letters, digits and '-')")
    parts = urlsplit(as_storage_uri(storage_root))
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{tenant_id}/"))


def open_tenant_storage(storage_root_uri: str | os.PathLike[str], tenant_id: str) -> TenantStorage:
    """The storage of one tenant: everything under ``<root>/<tenant_id>/`` and nothing else.

    Raises:
        InvalidArgument: unknown scheme, or a malformed tenant id.
    """
    uri = tenant_root_uri(storage_root_uri, tenant_id)
    scheme = urlsplit(uri).scheme
    factory = _factory(scheme)
    if factory is None:
        raise InvalidArgument(f"storage root scheme {scheme!r} is not supported; use one of "
                              f"{', '.join(s + '://' for s in supported_schemes())}")
    return factory(uri)


def resolve_dataset(uri: str, storage_root_uri: str | os.PathLike[str], tenant_id: str) -> tuple[TenantStorage, str]:
    """The tenant's storage and the dataset's place in it: one object key, or a folder prefix ending in '/'.

    ``""`` means the whole tenant root. List the dataset with ``storage.list(prefix)``
    (for a single object that lists exactly it).

    Raises:
        InvalidArgument: ``uri`` has a scheme no backend supports.
        PermissionDenied: ``uri`` is outside the tenant's boundary (another tenant, bucket
            or prefix, a ``..`` segment, a symlink leading out, a scheme other than the root's).
        FailedPrecondition: nothing is stored there.
    """
    scheme = urlsplit(uri).scheme
    if _factory(scheme) is None:
        raise InvalidArgument(f"storage_uri {quote(uri)}: scheme {quote(scheme or '(none)', 16)} is not supported; "
                              f"register data in tenant storage ({', '.join(s + '://' for s in supported_schemes())})",
                              reason="UNSUPPORTED_STORAGE_SCHEME")
    storage = open_tenant_storage(storage_root_uri, tenant_id)
    key = storage.key_for(uri)
    name = key.rstrip("/")
    if name and not key.endswith("/") and storage.exists(name):
        return storage, name
    prefix = f"{name}/" if name else ""
    if next(iter(storage.list(prefix)), None) is None:
        raise FailedPrecondition(f"nothing exists at {quote(uri)}; upload the files first, then register them",
                                 reason="NO_FILES_AT_STORAGE_URI")
    return storage, prefix
