"""Denied calls become AccessDenied events (invariant 4: every access is audited)."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import Engine

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.identity import UNAUTHENTICATED_TENANT, Caller, is_tenant_id

log = logging.getLogger(__name__)
SOURCE = "privtune/gateway"


class AccessDenialRecorder:
    """Stores each denial with the outbox, so it reaches the bus like any other event."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, metadata: dict[str, str], method: str, reason: str, rule: str) -> None:
        tenant = metadata.get("x-privtune-tenant", "")
        tenant = tenant if is_tenant_id(tenant) else UNAUTHENTICATED_TENANT
        principal = metadata.get("x-privtune-actor", "")[:128] or "anonymous"
        subject = f"denial-{uuid.uuid4().hex}"
        env = new_envelope(events_pb2.AccessDenied(principal=principal, method=method, reason=reason[:500], rule=rule),
                           subject=subject, tenant_id=tenant, source=SOURCE,
                           causation=Causation(actor=principal, correlation_id=metadata.get("x-correlation-id", "")))
        self._append(env, f"the denial of {method} for {principal}")

    def break_glass(self, caller: Caller, method: str) -> None:
        """Record a call only the break-glass role let through (under the caller's verified tenant)."""
        env = new_envelope(events_pb2.BreakGlassUsed(principal=caller.actor[:128], method=method,
                                                     issuer=caller.issuer[:255]),
                           subject=f"break-glass-{uuid.uuid4().hex}", tenant_id=caller.tenant_id, source=SOURCE,
                           causation=Causation(actor=caller.actor[:128], correlation_id=""))
        self._append(env, f"the break-glass use of {method} by {caller.actor[:128]}")

    def _append(self, env: events_pb2.EventEnvelope, what: str) -> None:
        try:
            with self.engine.begin() as conn:
                eventstore.append(conn, "access", [env], expected_version=0)
        except Exception:  # noqa: BLE001 - never turn an access record into a crash; the log keeps it
            log.exception("could not record %s", what)
