"""Tenant storage in an S3 bucket (AWS, or any S3-compatible server): ``s3://bucket/prefix/<tenant>/``.

Credentials and region come from the usual boto3 chain (environment, shared config,
instance role). The endpoint is AWS unless the root URI says otherwise::

    s3://bucket/tenants?endpoint_url=http://127.0.0.1:9000&region=eu-west-1

(``AWS_ENDPOINT_URL_S3`` works too). A custom endpoint is addressed path-style, as
MinIO, Ceph and moto expect. Writes are one PUT, or a multipart upload that is
aborted on failure: either way no partial object ever becomes visible.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from typing import Any, BinaryIO, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, PrivtuneError
from services.common.limits import quote
from services.common.storage.keys import has_dot_segment, validate_key, validate_prefix
from services.common.storage.protocol import ObjectInfo
from services.common.storage.s3_reader import S3RangeReader

log = logging.getLogger(__name__)

DEFAULT_PART_SIZE = 8 << 20   # multipart part size; S3 wants >= 5 MiB for all parts but the last
_MIN_PART_SIZE = 5 << 20
_READ_BUFFER = 256 << 10
_OPTIONS = ("endpoint_url", "region", "part_size")


@functools.lru_cache(maxsize=8)
def s3_client(endpoint_url: str | None = None, region: str | None = None) -> Any:
    """A shared, thread-safe boto3 S3 client per endpoint and region."""
    import boto3
    from botocore.config import Config

    config = Config(retries={"mode": "standard", "max_attempts": 5},
                    s3={"addressing_style": "path"} if endpoint_url else {})
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def connection_failure(exc: Exception, uri: str) -> FailedPrecondition | None:
    """What a client-side failure to reach an object store means (no credentials, no route), or None."""
    name = type(exc).__name__
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return FailedPrecondition("no S3 credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                                  "an AWS profile or an instance role")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
        return FailedPrecondition(f"the object store for {uri} cannot be reached ({name}); "
                                  "check endpoint_url and the network")
    return None


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class S3Storage:
    """One tenant's prefix in a bucket. ``uri`` is ``s3://bucket/prefix/`` (options stripped)."""

    def __init__(self, uri: str, *, client: Any | None = None, endpoint_url: str | None = None,
                 region: str | None = None, part_size: int = DEFAULT_PART_SIZE) -> None:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise InvalidArgument(f"{quote(uri)} is not an s3://bucket/prefix/ URI")
        if part_size < _MIN_PART_SIZE:
            raise InvalidArgument(f"part_size {part_size} is below the S3 minimum of {_MIN_PART_SIZE} bytes")
        self.bucket = parts.netloc
        base = parts.path.strip("/")
        validate_prefix(base)
        self.base = f"{base}/" if base else ""
        self.uri = f"s3://{self.bucket}/{self.base}"
        self.part_size = part_size
        self._client = client if client is not None else s3_client(endpoint_url, region)

    # -- errors -------------------------------------------------------------------------

    def _translate(self, exc: Exception, key: str = "") -> Exception:
        """A botocore error as a ``PrivtuneError`` naming the object and what to do."""
        if isinstance(exc, PrivtuneError):
            return exc
        code = _error_code(exc)
        where = f"{self.uri}{key}"
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"no object at {where}; list the storage to see what is there")
        if code == "NoSuchBucket":
            return FailedPrecondition(f"bucket {self.bucket!r} does not exist; create it or fix the storage root")
        if code in ("AccessDenied", "403", "Forbidden"):
            log.warning("the object store denied access to %s (%s)", where, code)
            return PermissionDenied(f"the object store denied access to {quote(key) if key else 'the tenant root'} "
                                    "in the tenant's storage; the platform's credentials need s3:GetObject/PutObject/"
                                    "ListBucket there (the server log names the location)")
        if code in ("PreconditionFailed", "412"):
            return FailedPrecondition(f"{where} was replaced while it was being read; read it again")
        return connection_failure(exc, self.uri) or exc

    # -- boundary -------------------------------------------------------------------------

    def key_for(self, uri: str) -> str:
        parts = urlsplit(uri)
        path = parts.path.lstrip("/")
        if (parts.scheme != "s3" or parts.netloc != self.bucket or has_dot_segment(path)
                or not (path + "/").startswith(self.base)):
            raise PermissionDenied(f"storage_uri {quote(uri)} is outside the tenant's storage; register data "
                                   "inside the tenant's own storage prefix", reason="OUTSIDE_TENANT_STORAGE")
        key = path[len(self.base):] if len(path) >= len(self.base) else ""
        validate_prefix(key)
        return key

    def uri_for(self, key: str) -> str:
        return self.uri + validate_key(key)

    # -- reading --------------------------------------------------------------------------

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.base + prefix)
        try:
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"][len(self.base):]
                    if key.endswith("/") and obj["Size"] == 0:
                        continue  # a console "folder" marker
                    try:
                        validate_key(key)
                    except InvalidArgument:
                        log.warning("skipping S3 object with an unusable key under %s (key %r)", self.uri, key)
                        continue
                    yield ObjectInfo(key, int(obj["Size"]))
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, prefix) from None

    def _head(self, key: str) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=self.base + key)
            return response
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key) from None

    def open(self, key: str) -> BinaryIO:
        head = self._head(validate_key(key))
        raw = S3RangeReader(self._client, self.bucket, self.base + key, int(head["ContentLength"]), head["ETag"],
                            lambda exc: self._translate(exc, key))
        return io.BufferedReader(raw, buffer_size=_READ_BUFFER)

    def exists(self, key: str) -> bool:
        try:
            self._head(validate_key(key))
        except NotFound:
            return False
        return True

    # -- writing --------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self.base + validate_key(key))
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key) from None

    def write(self, key: str, data: bytes | Iterable[bytes]) -> str:
        full = self.base + validate_key(key)
        if isinstance(data, (bytes, bytearray, memoryview)):
            if len(data) <= self.part_size:
                self._put(full, key, bytes(data))
                return hashlib.sha256(data).hexdigest()
            view = memoryview(data)
            return self._write_stream(full, key, (view[i:i + self.part_size].tobytes()
                                                  for i in range(0, len(view), self.part_size)))
        return self._write_stream(full, key, iter(data))

    def _put(self, full: str, key: str, body: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=body)
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key) from None

    def _write_stream(self, full: str, key: str, chunks: Iterator[bytes]) -> str:
        """One PUT if the stream fits a part, else a multipart upload holding about two parts in memory."""
        digest = hashlib.sha256()
        buf = _fill(chunks, bytearray(), self.part_size)
        digest.update(buf)
        if len(buf) < self.part_size:
            self._put(full, key, bytes(buf))
            return digest.hexdigest()
        try:
            upload_id = self._client.create_multipart_upload(Bucket=self.bucket, Key=full)["UploadId"]
        except Exception as exc:  # noqa: BLE001 - translated
            raise self._translate(exc, key) from None
        parts: list[dict[str, Any]] = []
        try:
            while buf:
                with memoryview(buf) as view:
                    body, rest = bytes(view[:self.part_size]), bytearray(view[self.part_size:])
                del buf
                number = len(parts) + 1
                etag = self._client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                                PartNumber=number, Body=body)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                del body
                kept = len(rest)
                buf = _fill(chunks, rest, self.part_size)
                with memoryview(buf) as view:
                    digest.update(view[kept:])
            self._client.complete_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                                   MultipartUpload={"Parts": parts})
        except BaseException as exc:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the original error matters more
                log.warning("could not abort multipart upload of %s%s; a lifecycle rule will expire it",
                            self.uri, key)
            translated = self._translate(exc, key) if isinstance(exc, Exception) else exc
            if translated is exc:
                raise
            raise translated from exc
        return digest.hexdigest()


def _fill(chunks: Iterator[bytes], buf: bytearray, size: int) -> bytearray:
    """Append chunks to ``buf`` until it holds ``size`` bytes or the chunks run out."""
    for chunk in chunks:
        buf += chunk
        if len(buf) >= size:
            break
    return buf


def open_s3_storage(root_uri: str) -> S3Storage:
    """Registry factory: ``s3://bucket/prefix/<tenant>/?endpoint_url=...&region=...&part_size=...``."""
    parts = urlsplit(root_uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        raise InvalidArgument(f"unknown s3 storage option(s) {', '.join(unknown)} in the storage root; "
                              f"supported: {', '.join(_OPTIONS)}")
    part_size = int(query["part_size"]) if query.get("part_size", "").isdigit() else DEFAULT_PART_SIZE
    return S3Storage(parts._replace(query="", fragment="").geturl(), endpoint_url=query.get("endpoint_url"),
                     region=query.get("region"), part_size=part_size)
