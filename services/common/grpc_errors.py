"""Map privtune errors to gRPC status codes, in one interceptor for every servicer."""

from __future__ import annotations

import logging
from typing import Any, Callable

import grpc
from google.rpc import error_details_pb2, status_pb2

from services.common import errors
from services.common.identity import ACTOR_HEADER, CORRELATION_HEADER, TENANT_HEADER, current_caller, trail_tenant
from services.common.limits import cut, cut_bytes

log = logging.getLogger(__name__)

STATUS_FOR: dict[type[errors.PrivtuneError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.ConcurrencyConflict: grpc.StatusCode.ABORTED,
    errors.BusUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.Busy: grpc.StatusCode.UNAVAILABLE,
    errors.ServerStopping: grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: errors.PrivtuneError) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        if cls in STATUS_FOR:
            return STATUS_FOR[cls]
    return grpc.StatusCode.INTERNAL


_DETAILS_KEY = "grpc-status-details-bin"  # where gRPC clients look for a google.rpc.Status
# Status message and details travel as trailing metadata, which clients cap (8 KiB by default in
# the C-core, Java and Go): the message goes twice (grpc-message, percent-encoded, and inside the
# details, base64), so both stay well under that whatever the characters.
MAX_MESSAGE_BYTES = 512
MAX_DESCRIPTION_BYTES = 256
MAX_DETAILS_BYTES = 3072
DenialRecorder = Callable[[dict[str, str], str, str, str], None]  # (metadata, method, reason, rule)
_DENIED = {grpc.StatusCode.UNAUTHENTICATED: "authentication", grpc.StatusCode.PERMISSION_DENIED: "authorization"}


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[tuple[str, Any], ...]) -> None:
        self.code, self.details, self.trailing_metadata = code, details, trailing_metadata


def rich_status(code: grpc.StatusCode, message: str, exc: errors.PrivtuneError | None = None,
                reason: str = "", metadata: dict[str, str] | None = None,
                trailing: tuple[tuple[str, str], ...] = ()) -> grpc.Status:
    """A status whose details (``grpc-status-details-bin``) are a google.rpc.Status carrying an
    ErrorInfo (always), a BadRequest (one FieldViolation per bad field), a ResourceInfo and a
    PreconditionFailure (when the error names them)."""
    details = exc.details if exc is not None else None
    message = cut_bytes(message, MAX_MESSAGE_BYTES)
    info = error_details_pb2.ErrorInfo(
        reason=(details.reason if details else reason) or code.name, domain=errors.DOMAIN,
        metadata={k[:64]: cut_bytes(v, MAX_DESCRIPTION_BYTES)
                  for k, v in {**(details.metadata if details else {}), **(metadata or {})}.items()})
    status = status_pb2.Status(code=code.value[0], message=message)
    status.details.add().Pack(info)
    if details and details.resource:
        status.details.add().Pack(error_details_pb2.ResourceInfo(
            resource_type=details.resource.type, resource_name=cut_bytes(details.resource.name, 128),
            description=cut_bytes(details.resource.description, MAX_DESCRIPTION_BYTES)))
    if details and details.preconditions:
        status.details.add().Pack(error_details_pb2.PreconditionFailure(violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type=p.type, subject=cut_bytes(p.subject, 128), description=cut_bytes(p.description,
                                                                                      MAX_DESCRIPTION_BYTES))
            for p in details.preconditions[:8]]))
    if details and details.fields:
        _add_field_violations(status, details.fields)
    return _Status(code, message, (*trailing, (_DETAILS_KEY, status.SerializeToString())))


def _add_field_violations(status: status_pb2.Status, fields: tuple[errors.FieldViolation, ...]) -> None:
    """A BadRequest with as many violations as fit in MAX_DETAILS_BYTES (the first ones, in
    order); how many were left out goes into ErrorInfo.metadata["omitted_field_violations"]."""
    bad = error_details_pb2.BadRequest()
    room = MAX_DETAILS_BYTES - status.ByteSize()
    kept = 0
    for f in fields:
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=cut_bytes(f.field, 256), description=cut_bytes(f.description, MAX_DESCRIPTION_BYTES))
        if bad.ByteSize() + violation.ByteSize() + 8 > room:
            break
        bad.field_violations.append(violation)
        kept += 1
    if kept < len(fields):
        info = error_details_pb2.ErrorInfo()
        status.details[0].Unpack(info)
        info.metadata["omitted_field_violations"] = str(len(fields) - kept)
        status.details[0].Pack(info)
    if kept:
        status.details.add().Pack(bad)


def abort(context: grpc.ServicerContext, code: grpc.StatusCode, message: str, reason: str = "",
          exc: errors.PrivtuneError | None = None, metadata: dict[str, str] | None = None,
          trailing: tuple[tuple[str, str], ...] = ()) -> None:
    """End the call with ``code``, the human ``message`` and machine-readable details (raises).
    ``trailing``: more trailing metadata (e.g. a retry-after hint)."""
    context.abort_with_status(rich_status(code, message, exc, reason, metadata, trailing))


def _abort(context: grpc.ServicerContext, exc: Exception, method: str, on_denied: DenialRecorder | None) -> None:
    if isinstance(exc, errors.PrivtuneError):
        code = status_for(exc)
        message = cut(str(exc))
        if code in _DENIED and on_denied is not None:
            metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
            verified = current_caller()
            # the trail is the verified tenant's whatever the headers say; without one, the platform's
            on_denied({TENANT_HEADER: trail_tenant(verified) if verified is not None else "",
                       ACTOR_HEADER: verified.actor if verified is not None else "",
                       CORRELATION_HEADER: metadata.get(CORRELATION_HEADER, "")}, method, message, _DENIED[code])
        abort(context, code, message, exc=exc)
    log.exception("unexpected error in %s", method)
    abort(context, grpc.StatusCode.INTERNAL, f"internal error in {method}; the server log has the details",
          reason="INTERNAL")


class ErrorMappingInterceptor(grpc.ServerInterceptor):
    """Turns a raised PrivtuneError into the matching status with its actionable message (cut to
    ``limits.MAX_MESSAGE_CHARS``).

    Unauthenticated and permission-denied calls are also handed to ``on_denied``
    (which records an AccessDenied event) before the status goes back.
    """

    def __init__(self, on_denied: DenialRecorder | None = None) -> None:
        self.on_denied = on_denied

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary:
            inner_uu = handler.unary_unary

            def unary_unary(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    return inner_uu(request, context)
                except Exception as exc:  # noqa: BLE001 - mapped to a status below
                    if _is_abort(exc):
                        raise
                    _abort(context, exc, method, self.on_denied)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            inner_us = handler.unary_stream

            def unary_stream(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    yield from inner_us(request, context)
                except Exception as exc:  # noqa: BLE001
                    if _is_abort(exc):
                        raise
                    _abort(context, exc, method, self.on_denied)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


def _is_abort(exc: Exception) -> bool:
    # context.abort() raises a bare Exception subclass private to grpc; let it through.
    return type(exc).__module__.startswith("grpc")
