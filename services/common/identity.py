"""Who is calling: the Caller of the current gRPC call.

The auth layer (services/common/auth/grpc_auth.py) authenticates every call — client
certificate or verified bearer token — and binds its Caller to the thread serving the call;
handlers read it with ``caller_from_metadata``. Tenant and actor are never read from the call's
headers: a handler that runs without a verified caller refuses the call (UNAUTHENTICATED). The
header names stay for what headers may still do: a component names the tenant it acts for (its
certificate is the identity), a token's caller may repeat its own tenant (another one is refused
as TENANT_MISMATCH), and ``x-correlation-id`` ties a call to its events.
"""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from typing import Iterable

from services.common.errors import Unauthenticated
from services.common.limits import MAX_ID

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
    via: str = ""         # how the identity was established: certificate or token ("": made in code, e.g. a test)
    issuer: str = ""      # the token's issuer (via token)
    expires_at: int = 0   # when the token expires, seconds since the epoch (via token; 0: never)


def trail_tenant(caller: Caller) -> str:
    """Whose trail a refusal of ``caller`` goes to: a person's verified tenant; for a component, whose
    tenant is only what its request names, the platform's (so no certificate writes into a tenant's trail)."""
    return PLATFORM_TENANT if caller.via == "certificate" else caller.tenant_id


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
    """The caller of the current call, as the auth layer verified it.

    ``metadata`` is the call's, kept for the handlers' signature: headers never name the caller.

    Raises:
        Unauthenticated: no verified caller is bound to this call (it did not pass the auth layer).
    """
    verified = _CURRENT.get()
    if verified is None:
        raise Unauthenticated(
            "no verified caller: send 'authorization: Bearer <token>' from your identity provider, or a "
            f"client certificate on the component port; {TENANT_HEADER} and {ACTOR_HEADER} alone identify no one",
            reason="MISSING_CREDENTIALS")
    return verified
