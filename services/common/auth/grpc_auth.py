"""Every gRPC call authenticated and authorised before its handler runs.

A caller proves who it is in one of two ways:

- a **client certificate** (mutual TLS, on the component port): a platform service or worker,
  named by the certificate's ``spiffe://privtune/<kind>/<name>`` URI; it acts for the tenant
  its request names (``x-privtune-tenant``) with the pseudo-role ``service`` or ``worker``;
- a **bearer token** (``authorization: Bearer <JWT>``, on the TLS port): a person or an
  enterprise system; tenant, subject and roles come from the verified claims. A tenant header
  that names another tenant is refused (TENANT_MISMATCH), never believed.

The role table (``roles.RPC_ROLES``) then decides. Denials are recorded under the tenant of the
*verified* identity (an unauthenticated caller under the platform's), so no caller can write
into another tenant's trail. Break-glass use is allowed, logged and reported.

Headers alone never identify a caller: a call with only ``x-privtune-tenant`` and
``x-privtune-actor`` is UNAUTHENTICATED (MISSING_CREDENTIALS).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import grpc
from cryptography import x509

from services.common.auth import roles as role_table
from services.common.auth.pki import spiffe_identity
from services.common.auth.tokens import Verifiers
from services.common.errors import PermissionDenied, PrivtuneError, Unauthenticated
from services.common.grpc_errors import DenialRecorder, abort
from services.common.identity import (ACTOR_HEADER, CORRELATION_HEADER, PLATFORM_TENANT, TENANT_HEADER, Caller,
                                      trail_tenant, bind_caller, is_tenant_id, unbind_caller)

log = logging.getLogger(__name__)
AUTHORIZATION_HEADER = "authorization"
EXPIRY_LEEWAY_S = 30  # as the verifier's
PLATFORM_ROLES = frozenset({"auditor"})  # all a token of the reserved platform tenant may do


AllowedRecorder = Callable[[Caller, str, str, str, int, str], None]  # caller, method, resource, outcome, ms, corr
_RESOURCE_FIELDS = ("job_id", "dataset_version_id", "model_version_id", "dataset_id", "run_id", "model_name",
                    "tenant_id")


def request_resource(request: Any) -> str:
    """``<field>=<value>`` of the request's first id-like field that is set (ids only, never content)."""
    fields = getattr(getattr(request, "DESCRIPTOR", None), "fields_by_name", {})
    for name in _RESOURCE_FIELDS:
        if name in fields:
            value = getattr(request, name, "")
            if isinstance(value, str) and value:
                return f"{name}={value[:128]}"
    return ""


@dataclass(frozen=True)
class Authenticator:
    """Turns a call's metadata and TLS peer into a Caller, or refuses it.

    ``verifiers``: the trusted token issuers (None: bearer tokens are refused).
    """

    verifiers: Verifiers | None = None

    def authenticate(self, metadata: Mapping[str, str], peer: Mapping[str, Any]) -> Caller:
        pem = peer.get("x509_pem_cert")
        if pem:
            return self._component(metadata, pem[0])
        header = metadata.get(AUTHORIZATION_HEADER, "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("the authorization header must be 'Bearer <token>'", reason="MALFORMED_TOKEN")
            if self.verifiers is None:
                raise Unauthenticated("this server accepts no bearer tokens here; use the component port with a "
                                      "client certificate", reason="TOKENS_NOT_ACCEPTED")
            claims = self.verifiers.verify(token.strip())
            claimed = metadata.get(TENANT_HEADER, "")
            if claimed and claimed != claims.tenant:
                raise PermissionDenied(
                    f"{TENANT_HEADER} names another tenant than the caller's token; a token acts for its own tenant "
                    "only (drop the header, or get a token for that tenant)", reason="TENANT_MISMATCH",
                    metadata={"token_tenant": claims.tenant, "token_subject": claims.subject})
            roles = claims.roles & PLATFORM_ROLES if claims.tenant == PLATFORM_TENANT else claims.roles
            return Caller(tenant_id=claims.tenant, actor=claims.subject, roles=roles, via="token",
                          issuer=claims.issuer, expires_at=claims.expires_at)
        raise Unauthenticated("no credentials: send 'authorization: Bearer <token>' from your identity provider "
                              "(privtune's CLI does it for you), or a client certificate on the component port",
                              reason="MISSING_CREDENTIALS")

    @staticmethod
    def _component(metadata: Mapping[str, str], pem: bytes) -> Caller:
        identity = _certificate_identity(pem)
        if identity is None:
            raise Unauthenticated("the client certificate names no privtune component (spiffe://privtune/...)",
                                  reason="UNKNOWN_CLIENT_CERTIFICATE")
        kind, name = identity
        tenant = metadata.get(TENANT_HEADER, "")
        if not is_tenant_id(tenant):
            raise Unauthenticated(f"a component acts for one tenant per call: send {TENANT_HEADER}",
                                  reason="MISSING_IDENTITY", metadata={"header": TENANT_HEADER})
        roles = frozenset({role_table.ATTEMPT}) if kind == "worker" and name.startswith(role_table.POD_NAME_PREFIX) \
            else frozenset({kind})  # a Kubernetes pod's certificate serves one training attempt, nothing else
        return Caller(tenant_id=tenant, actor=f"{kind}:{name}", roles=roles, via="certificate")


def _certificate_identity(pem: bytes) -> tuple[str, str] | None:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return None
    for uri in sans.get_values_for_type(x509.UniformResourceIdentifier):
        found = spiffe_identity(uri)
        if found is not None:
            return found
    return None


Behaviour = Callable[[Any, grpc.ServicerContext], Any]


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates and authorises every call but health and reflection (see the module doc)."""

    def __init__(self, authenticator: Authenticator, on_denied: DenialRecorder | None = None,
                 on_break_glass: Callable[[Caller, str], None] | None = None,
                 on_allowed: AllowedRecorder | None = None) -> None:
        self.authenticator = authenticator
        self.on_denied = on_denied
        self.on_break_glass = on_break_glass
        self.on_allowed = on_allowed

    def intercept_service(self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(details)
        if handler is None or role_table.is_public(details.method):
            return handler
        method = details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(method, handler.stream_unary), request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return grpc.stream_stream_rpc_method_handler(
            self._stream(method, handler.stream_stream), request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)

    def _unary(self, method: str, inner: Behaviour) -> Behaviour:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            caller = self._admit(method, context)
            token = bind_caller(caller)
            started, failed = time.monotonic(), True
            try:
                response = inner(request, context)
                failed = False
                return response
            finally:
                self._allowed(caller, method, request, context, started, failed)
                _unbind(token)
        return call

    def _stream(self, method: str, inner: Behaviour) -> Behaviour:
        def call(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller = self._admit(method, context)
            token = bind_caller(caller)
            expiry = None
            if caller.expires_at:  # a stream lives no longer than the token that opened it
                expiry = threading.Timer(max(0.0, caller.expires_at + EXPIRY_LEEWAY_S - time.time()), context.cancel)
                expiry.daemon = True
                expiry.start()
            started, failed = time.monotonic(), True
            # a stream may serve for hours: its opening is a record of its own, its end another
            self._allowed(caller, method, request, context, started, False, opened=True)
            try:
                yield from inner(request, context)
                failed = False
            finally:
                if expiry is not None:
                    expiry.cancel()
                self._allowed(caller, method, request, context, started, failed)
                _unbind(token)
        return call

    def _allowed(self, caller: Caller, method: str, request: Any, context: grpc.ServicerContext, started: float,
                 failed: bool, opened: bool = False) -> None:
        """Record an admitted call and how it ended, or a stream's opening (never fails the call: the
        recorder queues, and ``admit`` made room before the call ran)."""
        if self.on_allowed is None:
            return
        try:
            self._record_allowed(caller, method, request, context, started, failed, opened)
        except Exception:  # noqa: BLE001 - the call already ran; its record must not turn it into a failure
            log.exception("could not queue the access record of %s by %s", method, caller.actor)

    def _record_allowed(self, caller: Caller, method: str, request: Any, context: grpc.ServicerContext,
                        started: float, failed: bool, opened: bool) -> None:
        assert self.on_allowed is not None
        code = context.code() if hasattr(context, "code") else None
        if opened:
            outcome = "OPENED"
        elif isinstance(code, grpc.StatusCode):
            outcome = code.name
        elif not context.is_active():
            outcome = "CANCELLED"  # the client went away (or the stream outlived its token)
        else:
            outcome = "UNKNOWN" if failed else "OK"
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.on_allowed(caller, method, request_resource(request), outcome,
                        int((time.monotonic() - started) * 1000), metadata.get(CORRELATION_HEADER, "")[:128])

    def _admit(self, method: str, context: grpc.ServicerContext) -> Caller:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        try:
            caller = self.authenticator.authenticate(metadata, context.auth_context() or {})
        except PrivtuneError as exc:
            denied = isinstance(exc, PermissionDenied)
            code = grpc.StatusCode.PERMISSION_DENIED if denied else grpc.StatusCode.UNAUTHENTICATED
            verified = exc.details.metadata  # set only once a token verified (a forged tenant header)
            self._denied(metadata, method, str(exc), "authorization" if denied else "authentication",
                         verified.get("token_tenant", ""), verified.get("token_subject", ""))
            abort(context, code, str(exc), exc=exc)
            raise AssertionError("abort returned")  # pragma: no cover
        allowed, break_glass = role_table.decide(method, caller.roles)
        if not allowed:
            needed = sorted(role_table.allowed_roles(method))
            exc = PermissionDenied(f"{method.rsplit('/', 1)[-1]} needs one of the roles {', '.join(needed) or '(none)'}"
                                   f"; the caller has {', '.join(sorted(caller.roles)) or 'none'}",
                                   reason="ROLE_REQUIRED", metadata={"required_roles": ",".join(needed)})
            self._denied(metadata, method, str(exc), "authorization", trail_tenant(caller), caller.actor)
            abort(context, grpc.StatusCode.PERMISSION_DENIED, str(exc), exc=exc)
        admit = getattr(self.on_allowed, "admit", None)
        if admit is not None:
            try:
                admit()  # no room to record the call: it does not run
            except PrivtuneError as exc:
                abort(context, grpc.StatusCode.UNAVAILABLE, str(exc), exc=exc)
        if break_glass:
            log.warning("BREAK-GLASS: %s called %s in tenant %s", caller.actor, method, caller.tenant_id)
            if self.on_break_glass is not None:
                try:
                    self.on_break_glass(caller, method)  # stored before the call runs, or the call does not
                except Exception as exc:  # noqa: BLE001 - any failure to record refuses the call
                    log.error("break-glass use of %s by %s could not be recorded (%s): refused", method,
                              caller.actor, type(exc).__name__)
                    abort(context, grpc.StatusCode.UNAVAILABLE, "a break-glass call must be recorded before it "
                          "runs, and the record cannot be stored now; retry shortly", reason="AUDIT_UNAVAILABLE")
        return caller

    def _denied(self, metadata: Mapping[str, str], method: str, reason: str, rule: str, tenant: str,
                actor: str) -> None:
        """Record a denial under the verified tenant (or none): headers never choose the trail."""
        if self.on_denied is None:
            return
        trusted = {TENANT_HEADER: tenant, ACTOR_HEADER: actor or "anonymous",
                   CORRELATION_HEADER: metadata.get(CORRELATION_HEADER, "")[:128]}
        self.on_denied(trusted, method, reason, rule)


def _unbind(token: Any) -> None:
    try:
        unbind_caller(token)
    except ValueError:  # the generator was finalised in another context (e.g. by the garbage collector)
        pass
