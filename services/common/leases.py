"""Named leases in the store: one holder at a time (outbox relay, orchestrator controller)."""

from __future__ import annotations

from sqlalchemy import Engine, insert, or_, update
from sqlalchemy.exc import IntegrityError

from services.common.clock import now_ms
from services.common.store.schema import relay_leases


def take_lease(engine: Engine, name: str, owner: str, lease_ms: int) -> bool:
    """Take or renew lease ``name`` for ``owner``; False while another owner's lease is live."""
    now = now_ms()
    with engine.begin() as conn:
        taken = conn.execute(
            update(relay_leases)
            .where(relay_leases.c.name == name, or_(relay_leases.c.owner == owner, relay_leases.c.lease_until_ms < now))
            .values(owner=owner, lease_until_ms=now + lease_ms)
        ).rowcount
        if taken:
            return True
        try:
            with conn.begin_nested():
                conn.execute(insert(relay_leases).values(name=name, owner=owner, lease_until_ms=now + lease_ms))
            return True
        except IntegrityError:
            return False  # another holder has a live lease
