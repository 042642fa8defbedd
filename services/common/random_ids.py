"""Random ids and nonces drawn from a buffer of the kernel's randomness, fetched 4 KiB at a time.

``os.urandom`` (and so ``uuid.uuid4``) gives the GIL back around its ``getrandom`` call, as CPython does
around every blocking system call, and a thread that gives the GIL back must then win it back from
every other busy thread: under the API benchmark's load that is a wait each time, and a training-job
create drew random bytes 7 times (its id, its events' ids, the access record, the sealed position's
nonce). Here one ``os.urandom`` call serves 256 ids. The bytes are the kernel's CSPRNG output either
way; the buffer only fetches them in bulk, and each byte is handed out once.

For ids and nonces only, never for keys or other secrets (those come from ``secrets``): the bytes of
ids not yet handed out sit in this process's memory. A child made by ``fork`` starts with an empty
buffer (``os.register_at_fork``, and a process-id check on every draw), so a parent and its child never
hand out the same bytes: an AES-GCM nonce used twice would give its key away.
"""

from __future__ import annotations

import os
import threading
import uuid

_CHUNK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0
_pid = os.getpid()


def _forget() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()  # a fresh lock too: the parent's may have been held


os.register_at_fork(after_in_child=_forget)


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the kernel's CSPRNG (``os.urandom``), never handed out before in this process."""
    global _buffer, _offset, _pid
    if n < 0:
        raise ValueError(f"random_bytes({n}): a count of bytes is never negative")
    if n > 256:
        return os.urandom(n)
    with _lock:
        if _pid != os.getpid() or _offset + n > len(_buffer):
            _buffer, _offset, _pid = os.urandom(_CHUNK), 0, os.getpid()
        start = _offset
        _offset += n
        return _buffer[start:start + n]


def uuid4() -> uuid.UUID:
    """A random (version 4) UUID, as ``uuid.uuid4`` makes, from the buffer."""
    return uuid.UUID(bytes=random_bytes(16), version=4)
