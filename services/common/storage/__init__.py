"""Tenant storage: a small protocol with backends picked by URI scheme.

    from services.common.storage import open_tenant_storage, resolve_dataset
    storage = open_tenant_storage("file:///data/tenants", "acme")    # or "s3://bucket/tenants"
    storage, prefix = resolve_dataset("file:///data/tenants/acme/docs", "file:///data/tenants", "acme")
    for obj in storage.list(prefix): ...
"""

from services.common.storage.file import FileStorage
from services.common.storage.keys import validate_key, validate_prefix
from services.common.storage.protocol import ObjectInfo, RejectedEntry, TenantStorage, list_entries
from services.common.storage.registry import (
    as_storage_uri,
    open_tenant_storage,
    register_backend,
    resolve_dataset,
    tenant_root_uri,
)

__all__ = ["FileStorage", "ObjectInfo", "RejectedEntry", "TenantStorage", "as_storage_uri", "list_entries",
           "open_tenant_storage", "register_backend", "resolve_dataset", "tenant_root_uri", "validate_key",
           "validate_prefix"]
