"""What a worker needs to call a service it depends on: a channel to an address that may be known only
later, and a call retried while the service cannot answer (restarting, overloaded), never when it did."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, TypeVar

import grpc

from services.common.errors import BusUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED,
             grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL)
# the service answered about the request itself (no such job, a malformed request): asking again gives the
# same answer. Authentication and permission errors are not among them: they say the worker is
# misconfigured, and stay failures (logged, health failing) rather than silently marking work done.
REFUSED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)


class LazyChannel:
    """A mutual-TLS channel to ``target`` (``host:port`` or a function giving it, resolved at each
    use) with ``credentials``, a component's client certificate (``services.common.auth.channels``)."""

    def __init__(self, target: str | Callable[[], str], credentials: grpc.ChannelCredentials) -> None:
        self._target = target
        self._credentials = credentials
        self._channel: grpc.Channel | None = None
        self.address = ""

    def get(self) -> grpc.Channel:
        address = self._target() if callable(self._target) else self._target
        if self._channel is None or address != self.address:
            self.close()
            self._channel, self.address = grpc.secure_channel(address, self._credentials), address
        return self._channel

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None


def call_until_answered(call: Callable[[], T], what: str, *, give_up_after: float, max_backoff: float = 10.0,
                        stop: threading.Event | None = None) -> T:
    """``call()``, retried with backoff while it fails with a status that says "not now".

    Raises:
        BusUnavailable: still no answer after ``give_up_after`` seconds (or ``stop`` was set); nothing
            was decided, the caller leaves its work for later.
        grpc.RpcError: the service answered with any other status.
    """
    deadline = time.monotonic() + give_up_after
    backoff = 0.5
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code not in RETRYABLE:
                raise
            if time.monotonic() + backoff > deadline or (stop is not None and stop.is_set()):
                raise BusUnavailable(f"{what}: no answer ({code}) after {give_up_after:.0f}s") from None
            log.warning("%s: %s; retrying in %.1fs", what, code, backoff)
            if stop is not None:
                if stop.wait(backoff) or stop.is_set():  # set meanwhile: no further call
                    raise BusUnavailable(f"{what}: stopped while retrying ({code})") from None
            else:
                time.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
