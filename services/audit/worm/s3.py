"""Sealed audit segments in an S3 bucket with Object Lock: ``s3://bucket/prefix/<tenant>/<name>``.

The endpoint and region are options of the URI, as for tenant storage::

    s3://audit-bucket/segments?endpoint_url=http://127.0.0.1:9000&region=eu-west-1

The bucket must have Object Lock enabled (so it is versioned); the store checks that
when it opens. A segment is one PUT in COMPLIANCE mode until its ``retain_until_ms``:
no credential, root included, can delete that version or shorten its retention before
then. A segment sealed with ``retain_until_ms == 0`` is put without a lock mode (S3's
compliance mode needs a date) and is protected only by the bucket's default retention,
if any, and by its legal hold.

An overwrite or a delete cannot remove a locked version, only add a newer version or a
delete marker on top of it. So the sealed segment is always the key's *oldest* version:
``read`` returns it and counts what came later as ``extra_versions``, and ``names``
lists keys hidden behind a delete marker too.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timezone
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

from services.audit.worm.protocol import (SEGMENT_NAME_RE, Retention, SegmentExists, SegmentRead,
                                          check_segment_name, check_tenant_id)
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, PrivtuneError
from services.common.identity import is_tenant_id
from services.common.limits import quote
from services.common.storage.keys import validate_prefix
from services.common.storage.s3 import connection_failure, s3_client

log = logging.getLogger(__name__)

_OPTIONS = ("endpoint_url", "region")
SHA256_METADATA = "sha256"  # object metadata: hex sha256 of the sealed bytes


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _ms(value: datetime | None) -> int:
    return round(value.timestamp() * 1000) if value is not None else 0


class S3SegmentStore:
    """Segments under ``s3://bucket/prefix/``. ``uri`` is that root (options stripped)."""

    def __init__(self, uri: str, *, client: Any | None = None, endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgument(f"{quote(uri)} is not an s3://bucket/prefix URI for the audit segment store")
        self.bucket = parts.netloc
        base = parts.path.strip("/")
        validate_prefix(base)
        self.base = f"{base}/" if base else ""
        self.uri = f"s3://{self.bucket}/{self.base}"
        self._client = client if client is not None else s3_client(endpoint_url, region)
        self._check_object_lock()

    # -- errors -------------------------------------------------------------------------

    def _translate(self, exc: Exception, where: str = "") -> Exception:
        """A botocore error as a ``PrivtuneError`` naming the place and what to do."""
        if isinstance(exc, PrivtuneError):
            return exc
        code = _error_code(exc)
        place = f"{self.uri}{where}"
        if code in ("NoSuchKey", "NoSuchVersion", "404", "NotFound"):
            return NotFound(f"no audit segment at {place}; list the tenant's segments to see what is sealed")
        if code == "NoSuchBucket":
            return FailedPrecondition(f"bucket {self.bucket!r} does not exist; create it with Object Lock enabled "
                                      "or fix the audit store URI")
        if code in ("AccessDenied", "403", "Forbidden"):
            return PermissionDenied(f"the object store denied access to {place}; the audit service's credentials "
                                    "need s3:GetObject/GetObjectVersion/PutObject/ListBucketVersions/"
                                    "PutObjectLegalHold/DeleteObjectVersion there")
        return connection_failure(exc, self.uri) or exc

    def _check_object_lock(self) -> None:
        try:
            config = self._client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
        except Exception as exc:  # noqa: BLE001 - translated
            if _error_code(exc) != "ObjectLockConfigurationNotFoundError":
                raise self._translate(exc) from None
            config = {}
        if config.get("ObjectLockEnabled") != "Enabled":
            raise FailedPrecondition(
                f"bucket {self.bucket!r} does not have S3 Object Lock enabled, so sealed audit segments could be "
                "overwritten or deleted; use a bucket created with Object Lock (aws s3api create-bucket --bucket "
                f"{self.bucket} --object-lock-enabled-for-bucket), or enable versioning and then "
                "put-object-lock-configuration on this one", reason="OBJECT_LOCK_DISABLED")

    # -- keys and versions ----------------------------------------------------------------

    def _key(self, tenant_id: str, name: str) -> str:
        return f"{self.base}{check_tenant_id(tenant_id)}/{check_segment_name(name)}"

    def _pages(self, prefix: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        try:
            yield from self._client.get_paginator("list_object_versions").paginate(
                Bucket=self.bucket, Prefix=prefix, **kwargs)
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, prefix[len(self.base):]) from None

    def _versions(self, key: str) -> tuple[list[str], list[str]]:
        """The version ids of ``key``, newest first (as S3 lists them), and those of its delete markers."""
        versions: list[str] = []
        markers: list[str] = []
        for page in self._pages(key):
            versions += [v["VersionId"] for v in page.get("Versions", ()) if v["Key"] == key]
            markers += [m["VersionId"] for m in page.get("DeleteMarkers", ()) if m["Key"] == key]
        return versions, markers

    def _sealed_version(self, tenant_id: str, name: str) -> tuple[str, list[str], list[str]]:
        """The key, its versions and delete markers. Raises ``NotFound`` if it has no version."""
        key = self._key(tenant_id, name)
        versions, markers = self._versions(key)
        if not versions:
            raise NotFound(f"no audit segment {quote(name)} for tenant {tenant_id!r} in {self.uri}; list the "
                           "tenant's segments to see what is sealed")
        return key, versions, markers

    def _head(self, key: str, version: str) -> dict[str, Any]:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key, VersionId=version)
            return head
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key[len(self.base):]) from None

    def _get(self, key: str, version: str) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.get_object(Bucket=self.bucket, Key=key, VersionId=version)
            return {**response, "Body": response["Body"].read()}
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key[len(self.base):]) from None

    # -- writing --------------------------------------------------------------------------

    def seal(self, tenant_id: str, name: str, data: bytes, retention: Retention) -> None:
        key = self._key(tenant_id, name)
        digest = hashlib.sha256(data).hexdigest()
        versions, _ = self._versions(key)
        if versions:
            self._check_same(tenant_id, name, key, versions[-1], digest)
            return
        lock: dict[str, Any] = {"ObjectLockLegalHoldStatus": "ON" if retention.legal_hold else "OFF"}
        if retention.retain_until_ms > 0:
            lock.update(ObjectLockMode="COMPLIANCE", ObjectLockRetainUntilDate=datetime.fromtimestamp(
                retention.retain_until_ms / 1000, tz=timezone.utc))
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256",
                                    IfNoneMatch="*", Metadata={SHA256_METADATA: digest}, **lock)
        except Exception as exc:  # noqa: BLE001 - translated
            if _error_code(exc) not in ("PreconditionFailed", "412"):
                raise self._translate(exc, key[len(self.base):]) from None
            versions, _ = self._versions(key)  # another writer sealed it first
            self._check_same(tenant_id, name, key, versions[-1], digest)

    def _check_same(self, tenant_id: str, name: str, key: str, version: str, digest: str) -> None:
        """Raise ``SegmentExists`` unless the sealed version of ``key`` holds the bytes of sha256 ``digest``."""
        sealed = self._head(key, version).get("Metadata", {}).get(SHA256_METADATA)
        if sealed is None:  # not sealed by this store: compare the bytes themselves
            sealed = hashlib.sha256(self._get(key, version)["Body"]).hexdigest()
        if sealed != digest:
            raise SegmentExists(f"segment {quote(name)} of tenant {tenant_id!r} is already sealed in {self.uri} "
                                "with different content; sealed segments are never overwritten, seal the records "
                                "under a new name")

    def set_legal_hold(self, tenant_id: str, name: str, on: bool) -> None:
        key, versions, _ = self._sealed_version(tenant_id, name)
        try:
            self._client.put_object_legal_hold(Bucket=self.bucket, Key=key, VersionId=versions[-1],
                                               LegalHold={"Status": "ON" if on else "OFF"})
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key[len(self.base):]) from None

    def purge_expired(self, tenant_id: str, now_ms: int) -> list[str]:
        """Delete expired segments with every later version and delete marker, newest first.

        The sealed version goes last, so if S3 refuses any deletion (a later version under
        its own lock, or a server clock behind ``now_ms``) the segment stays readable.
        """
        purged = []
        for name in self.names(tenant_id):
            key, versions, markers = self._sealed_version(tenant_id, name)
            head = self._head(key, versions[-1])
            if head.get("ObjectLockLegalHoldStatus") == "ON" or _ms(head.get("ObjectLockRetainUntilDate")) > now_ms:
                continue
            if self._delete_versions(key, markers + versions):
                purged.append(name)
        return purged

    def _delete_versions(self, key: str, version_ids: list[str]) -> bool:
        for version in version_ids:
            try:
                self._client.delete_object(Bucket=self.bucket, Key=key, VersionId=version)
            except Exception as exc:  # noqa: BLE001 - a protected version stays; the rest of the purge goes on
                if _error_code(exc) not in ("AccessDenied", "403"):
                    raise self._translate(exc, key[len(self.base):]) from None
                log.warning("the object store refused to delete version %s of %s%s; keeping the segment",
                            version, self.uri, key[len(self.base):])
                return False
        return True

    # -- reading --------------------------------------------------------------------------

    def read(self, tenant_id: str, name: str) -> SegmentRead:
        key, versions, markers = self._sealed_version(tenant_id, name)
        sealed = self._get(key, versions[-1])
        return SegmentRead(data=sealed["Body"], extra_versions=len(versions) - 1 + len(markers),
                           retain_until_ms=_ms(sealed.get("ObjectLockRetainUntilDate")),
                           legal_hold=sealed.get("ObjectLockLegalHoldStatus") == "ON")

    def names(self, tenant_id: str) -> list[str]:
        prefix = f"{self.base}{check_tenant_id(tenant_id)}/"
        found = {v["Key"][len(prefix):] for page in self._pages(prefix) for v in page.get("Versions", ())}
        return sorted(name for name in found if SEGMENT_NAME_RE.fullmatch(name))

    def tenants(self) -> list[str]:
        found = {p["Prefix"][len(self.base):].rstrip("/")
                 for page in self._pages(self.base, Delimiter="/") for p in page.get("CommonPrefixes", ())}
        return sorted(t for t in found if is_tenant_id(t))


def open_s3_segment_store(uri: str) -> S3SegmentStore:
    """Registry factory: ``s3://bucket/prefix?endpoint_url=...&region=...``."""
    parts = urlsplit(uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise InvalidArgument(f"unknown s3 audit store option(s) {', '.join(unknown)}; supported: "
                              f"{', '.join(_OPTIONS)}")
    return S3SegmentStore(parts._replace(query="", fragment="").geturl(), endpoint_url=query.get("endpoint_url"),
                          region=query.get("region"))
