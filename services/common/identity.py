"""Who is calling: tenant and actor from gRPC call metadata."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from services.common.errors import Unauthenticated

TENANT_HEADER = "x-privtune-tenant"
ACTOR_HEADER = "x-privtune-actor"
CORRELATION_HEADER = "x-correlation-id"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ACTOR_RE = re.compile(r"^[\w.@:+-]{1,128}$")


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    actor: str


def correlation_id_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str:
    """The caller's ``x-correlation-id`` (empty: the service makes one)."""
    value = dict(metadata or ()).get(CORRELATION_HEADER, "")
    return value.decode() if isinstance(value, bytes) else value


def caller_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> Caller:
    """Read and validate the caller's identity.

    Raises:
        Unauthenticated: a header is missing or malformed (the message names it).
    """
    values = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in (metadata or ())}
    tenant = values.get(TENANT_HEADER, "")
    actor = values.get(ACTOR_HEADER, "")
    if not tenant:
        raise Unauthenticated(f"missing call metadata {TENANT_HEADER!r}: send the tenant id with every call")
    if not _TENANT_RE.match(tenant):
        raise Unauthenticated(
            f"{TENANT_HEADER} {tenant!r} is not a tenant id (lowercase letters, digits and '-', at most 63)"
        )
    if not actor:
        raise Unauthenticated(f"missing call metadata {ACTOR_HEADER!r}: send the calling user or service")
    if not _ACTOR_RE.match(actor):
        raise Unauthenticated(f"{ACTOR_HEADER} {actor!r} has characters other than letters, digits and ._@:+-")
    return Caller(tenant_id=tenant, actor=actor)
