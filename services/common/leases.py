"""Named leases in the store: one holder at a time (outbox relay, orchestrator controller, a curation job)."""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
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


def take_unclaimed_lease(engine: Engine, name: str, owner: str, lease_ms: int) -> bool:
    """Take lease ``name`` only if nobody holds it or held it without giving it up (no row): a lapsed
    lease stays with its last holder until it is released or taken over with ``take_lease``."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(relay_leases).values(name=name, owner=owner, lease_until_ms=now_ms() + lease_ms))
        return True
    except IntegrityError:
        return False


def release_lease(engine: Engine, name: str, owner: str) -> None:
    """Give lease ``name`` up if ``owner`` holds it (another holder's lease is left alone)."""
    with engine.begin() as conn:
        release_lease_in(conn, name, owner)


def lease_holder(conn: Connection, name: str) -> str | None:
    """Who holds (or last held, if it lapsed and nobody took it since) lease ``name``; None if nobody."""
    row = conn.execute(select(relay_leases.c.owner).where(relay_leases.c.name == name)).first()
    return row.owner if row is not None else None


def release_lease_in(conn: Connection, name: str, owner: str) -> None:
    """``release_lease`` inside the caller's transaction (with the effect the lease guarded)."""
    conn.execute(delete(relay_leases).where(relay_leases.c.name == name, relay_leases.c.owner == owner))
