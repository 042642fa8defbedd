"""Every gRPC call held to the input limits before a servicer sees it, and server streams capped.

``RequestLimitsInterceptor`` wraps each method's request deserializer and behaviour:

* a request larger than its method's byte limit, or bytes that are not the method's
  request message, get INVALID_ARGUMENT (gRPC itself would answer INTERNAL for the
  latter), before anything is parsed;
* every string of the parsed request is checked by ``limits.check_request``
  (INVALID_ARGUMENT naming the field);
* a server stream takes a slot in ``StreamSlots`` while it is open; beyond the
  process or tenant cap the call gets RESOURCE_EXHAUSTED with ``retry-after-ms``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import grpc

from services.common import limits
from services.common.errors import InvalidArgument
from services.common.grpc_errors import abort
from services.common.auth.roles import PUBLIC_PREFIXES
from services.common.identity import TENANT_HEADER, current_caller, is_tenant_id

RETRY_AFTER_HEADER = "retry-after-ms"
Behaviour = Callable[[Any, grpc.ServicerContext], Any]  # what a method handler runs for one call
_ANONYMOUS = "(no tenant)"
_PUBLIC = "(health and reflection)"


@dataclass(frozen=True)
class _Rejected:
    """What the deserializer hands on instead of a request it refused."""

    message: str
    reason: str


class StreamSlots:
    """Open server streams, counted per process and per tenant."""

    def __init__(self, caps: limits.StreamLimits) -> None:
        self.caps = caps
        self._lock = threading.Lock()
        self._by_tenant: dict[str, int] = {}
        self._active = 0

    @property
    def active(self) -> int:
        return self._active

    def take(self, tenant: str) -> Callable[[], None] | str:
        """A slot for one stream of ``tenant``: its release function (safe to call twice), or why there is none."""
        with self._lock:
            if self._active >= self.caps.per_process:
                return (f"this server already serves {self._active} streams, its limit; close a Watch call "
                        f"or retry in {self.caps.retry_after_ms / 1000:g} s")
            held = self._by_tenant.get(tenant, 0)
            if held >= self.caps.per_tenant:
                return (f"tenant {limits.quote(tenant)} already has {held} open streams, the limit per tenant; "
                        f"close a Watch call or retry in {self.caps.retry_after_ms / 1000:g} s")
            self._active += 1
            self._by_tenant[tenant] = held + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                self._active -= 1
                left = self._by_tenant[tenant] - 1
                if left:
                    self._by_tenant[tenant] = left
                else:
                    del self._by_tenant[tenant]

        return release


def _tenant(details: grpc.HandlerCallDetails) -> str:
    """The tenant a stream claims in its headers (calls without a valid tenant, and the public
    health and reflection streams, share one bucket)."""
    if details.method.startswith(PUBLIC_PREFIXES):
        return _PUBLIC
    for key, value in details.invocation_metadata or ():
        if key == TENANT_HEADER and isinstance(value, str) and is_tenant_id(value):
            return value
    return _ANONYMOUS


def _deserializer(method: str, parse: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    limit = limits.max_request_bytes(method)
    name = method.rsplit("/", 1)[-1]

    def deserialize(data: bytes) -> Any:
        if len(data) > limit:
            return _Rejected(f"the {name} request is {len(data)} bytes; at most {limit} are accepted", "REQUEST_TOO_LARGE")
        if parse is None:
            return data
        try:
            return parse(data)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the client's bytes
            expected = getattr(parse, "__qualname__", "").split(".")[0] or "the request message"
            return _Rejected(f"the body of {name} is not a valid {expected} ({type(exc).__name__}); "
                             "send the method's protobuf request", "MALFORMED_REQUEST")

    return deserialize


def _checked(request: Any) -> InvalidArgument | None:
    """Why ``request`` is refused, or None when it is within limits."""
    if isinstance(request, _Rejected):
        return InvalidArgument(request.message, reason=request.reason)
    if hasattr(request, "ListFields"):
        try:
            limits.check_request(request)
        except InvalidArgument as exc:
            return exc
    return None


class RequestLimitsInterceptor(grpc.ServerInterceptor):
    """Refuses oversized, malformed and out-of-limit requests, and caps server streams."""

    def __init__(self, slots: StreamSlots) -> None:
        self.slots = slots

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        deserialize = _deserializer(method, handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _one_request(handler.unary_unary), request_deserializer=deserialize, response_serializer=serialize)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _request_stream(handler.stream_unary), request_deserializer=deserialize,
                response_serializer=serialize)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _one_request(self._capped(_tenant(details), handler.unary_stream)),
                request_deserializer=deserialize, response_serializer=serialize)
        return grpc.stream_stream_rpc_method_handler(
            _request_stream(self._capped(_tenant(details), handler.stream_stream)),
            request_deserializer=deserialize, response_serializer=serialize)

    def _capped(self, claimed: str, behaviour: Behaviour) -> Behaviour:
        """``behaviour`` (a server stream) holding one of the tenant's stream slots while it runs.

        The tenant is the verified caller's when the auth layer bound one (it runs first), so
        no header can spend another tenant's slots; without one (health and reflection streams)
        the claimed header tenant, and public streams share one bucket, so they can take at most
        one tenant's share of the process's streams.
        """
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller = current_caller()
            tenant = caller.tenant_id if caller is not None else claimed
            slot = self.slots.take(tenant)
            if isinstance(slot, str):
                abort(context, grpc.StatusCode.RESOURCE_EXHAUSTED, slot, reason="TOO_MANY_STREAMS",
                      metadata={"retry_after_ms": str(self.slots.caps.retry_after_ms)},
                      trailing=((RETRY_AFTER_HEADER, str(self.slots.caps.retry_after_ms)),))
            context.add_callback(slot)  # the call ended: client gone, deadline, server stopping
            try:
                yield from behaviour(request, context)
            finally:
                slot()

        return stream


def _one_request(behaviour: Behaviour) -> Behaviour:
    """``behaviour`` (of a call with one request) behind the request checks."""
    def call(request: Any, context: grpc.ServicerContext) -> Any:
        problem = _checked(request)
        if problem is not None:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(problem), exc=problem)
        return behaviour(request, context)

    return call


def _request_stream(behaviour: Behaviour) -> Behaviour:
    """``behaviour`` (of a call with a stream of requests) checking each request as it arrives."""
    def call(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
        def checked() -> Iterator[Any]:
            for request in requests:
                problem = _checked(request)
                if problem is not None:
                    abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(problem), exc=problem)
                yield request

        return behaviour(checked(), context)

    return call
