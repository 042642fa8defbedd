"""A seekable, streaming reader of one S3 object, built on ranged GETs.

Sequential reads use one GET; a seek elsewhere starts a new ranged GET there (what
zip and PDF readers need: they read a directory at the end first). Every GET is
pinned to the ETag seen when the object was opened, so an object replaced mid-read
fails loudly instead of mixing two versions.
"""

from __future__ import annotations

import io
from typing import Any, Callable

from services.common.errors import FailedPrecondition


class S3RangeReader(io.RawIOBase):
    """Raw reader; wrap it in ``io.BufferedReader`` (``S3Storage.open`` does)."""

    def __init__(self, client: Any, bucket: str, key: str, size: int, etag: str,
                 translate: Callable[[Exception], Exception]) -> None:
        super().__init__()
        self._client = client
        self._bucket = bucket
        self._key = key
        self._size = size
        self._etag = etag
        self._translate = translate
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError(f"negative seek position {target}")
        if target != self._pos:
            self._drop_body()
            self._pos = target
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self.closed:
            raise ValueError("read from a closed S3 object reader")
        if self._pos >= self._size:
            return 0
        if self._body is None:
            try:
                response = self._client.get_object(Bucket=self._bucket, Key=self._key, IfMatch=self._etag,
                                                   Range=f"bytes={self._pos}-")
            except Exception as exc:  # noqa: BLE001 - translated to an actionable PrivtuneError
                raise self._translate(exc) from None
            self._body = response["Body"]
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except Exception as exc:  # noqa: BLE001 - a network failure, not bad data: the caller retries
            raise FailedPrecondition(f"reading {self._key!r} from the object store failed at byte {self._pos} "
                                     f"({type(exc).__name__}); retry") from None
        if not data:
            raise FailedPrecondition(f"S3 object {self._key!r} ended at byte {self._pos} of {self._size}; retry")
        view[:len(data)] = data
        self._pos += len(data)
        return len(data)

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
