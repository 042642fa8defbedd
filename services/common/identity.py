"""Who is calling: the Caller of the current gRPC call.

The auth layer (services/common/auth/grpc_auth.py) authenticates every call — client
certificate or verified bearer token — and binds its Caller to the thread serving the call;
handlers read it with ``caller_from_metadata``. Only in the insecure development mode (no
authenticator bound a caller) are tenant and actor read from the call's headers.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from typing import Iterable

from services.common.errors import Unauthenticated
from services.common.limits import MAX_ID, quote

TENANT_HEADER = "x-privtune-tenant"
ACTOR_HEADER = "x-privtune-actor"
CORRELATION_HEADER = "x-correlation-id"
UNAUTHENTICATED_TENANT = "_unauthenticated"  # denials that carry no valid tenant are recorded under this
# The platform operator's own tenant: its audit log holds unauthenticated calls, and its auditors may read
# every tenant's log. Reserved: a token of this tenant carries no role but ``auditor`` (it owns no data).
PLATFORM_TENANT = "platform"
TENANT_ID_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # the whole id: use fullmatch (see is_tenant_id)
_ACTOR_RE = re.compile(r"^[\w.@:+-]{1,128}$")


def is_actor(value: str) -> bool:
    """Whether ``value`` can name a caller in records and logs: 1-128 letters, digits and ``._@:+-``."""
    return _ACTOR_RE.fullmatch(value) is not None


def is_tenant_id(value: str) -> bool:
    """Whether ``value`` is a tenant id: lowercase letters, digits and '-', 1-63 characters, not starting with '-'.

    Tenant ids name storage folders, policy files and topic keys, so nothing else (no '/', '..',
    upper case or trailing newline) is one.
    """
    return TENANT_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    actor: str
    roles: frozenset[str] = field(default_factory=frozenset)
    via: str = "headers"  # how the identity was established: certificate, token or headers
    issuer: str = ""      # the token's issuer (via token)
    expires_at: int = 0   # when the token expires, seconds since the epoch (via token; 0: never)


_CURRENT: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("privtune_caller", default=None)


def current_caller() -> Caller | None:
    """The authenticated caller of the call this thread serves (None outside one, or unauthenticated)."""
    return _CURRENT.get()


def bind_caller(caller: Caller) -> contextvars.Token[Caller | None]:
    """Make ``caller`` the current call's caller; give the result to ``unbind_caller`` when the call ends."""
    return _CURRENT.set(caller)


def unbind_caller(token: contextvars.Token[Caller | None]) -> None:
    _CURRENT.reset(token)


def correlation_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's ``x-correlation-id``, at most 128 characters (empty: the service makes one)."""
    value = dict(metadata or ()).get(CORRELATION_HEADER, "")
    return (value.decode(errors="replace") if isinstance(value, bytes) else value)[:MAX_ID]


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """The caller of the current call: the one the auth layer verified, else (insecure development
    mode only) the one its headers name.

    Raises:
        Unauthenticated: no verified caller, and a header is missing or malformed.
    """
    verified = _CURRENT.get()
    return verified if verified is not None else caller_from_headers(metadata)


def caller_from_headers(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """Read and validate the identity the call's headers claim (trusted only in insecure mode).

    Raises:
        Unauthenticated: a header is missing or malformed (the message names it).
    """
    values = {k.lower(): (v.decode(errors="replace") if isinstance(v, bytes) else v) for k, v in (metadata or ())}
    tenant = values.get(TENANT_HEADER, "")
    actor = values.get(ACTOR_HEADER, "")
    if not tenant:
        raise Unauthenticated(f"missing call metadata {TENANT_HEADER!r}: send the tenant id with every call",
                              reason="MISSING_IDENTITY", metadata={"header": TENANT_HEADER})
    if not is_tenant_id(tenant):
        raise Unauthenticated(
            f"{TENANT_HEADER} {quote(tenant)} is not a tenant id (lowercase letters, digits and '-', at most 63)",
            reason="MALFORMED_IDENTITY", metadata={"header": TENANT_HEADER}
        )
    if not actor:
        raise Unauthenticated(f"missing call metadata {ACTOR_HEADER!r}: send the calling user or service",
                              reason="MISSING_IDENTITY", metadata={"header": ACTOR_HEADER})
    if not _ACTOR_RE.fullmatch(actor):
        raise Unauthenticated(f"{ACTOR_HEADER} {quote(actor)} has characters other than letters, digits and "
                              "._@:+- or is longer than 128", reason="MALFORMED_IDENTITY",
                              metadata={"header": ACTOR_HEADER})
    return Caller(tenant_id=tenant, actor=actor)
