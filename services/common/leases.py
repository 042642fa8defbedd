"""Named leases in the store: one holder at a time (outbox relay, orchestrator controller, a curation job)."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.common.clock import now_ms
from services.common.store.schema import relay_leases

log = logging.getLogger(__name__)


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


def release_lease(engine: Engine, name: str, owner: str) -> None:
    """Give lease ``name`` up if ``owner`` holds it (another holder's lease is left alone)."""
    with engine.begin() as conn:
        conn.execute(delete(relay_leases).where(relay_leases.c.name == name, relay_leases.c.owner == owner))


@contextmanager
def holding_lease(engine: Engine, name: str, owner: str, lease_ms: int) -> Iterator[bool]:
    """Hold lease ``name`` for the ``with`` block, renewing it every third of ``lease_ms``.

    Yields False (and holds nothing) when another owner's lease is live. A renewal the store
    refuses is logged; the lease then runs out and another owner may take it over.
    """
    if not take_lease(engine, name, owner, lease_ms):
        yield False
        return
    done = threading.Event()

    def renew() -> None:
        while not done.wait(lease_ms / 3000):
            try:
                if not take_lease(engine, name, owner, lease_ms):
                    log.error("lease %s was taken over by another owner while %s held it", name, owner)
                    return
            except Exception:  # noqa: BLE001 - the store is briefly away: try again next period
                log.warning("could not renew lease %s", name, exc_info=True)

    renewer = threading.Thread(target=renew, daemon=True, name=f"lease-{name[:40]}")
    renewer.start()
    try:
        yield True
    finally:
        done.set()
        renewer.join(timeout=10)
        try:
            release_lease(engine, name, owner)
        except Exception:  # noqa: BLE001 - it expires by itself
            log.warning("could not release lease %s; it expires in %d ms", name, lease_ms, exc_info=True)


def lease_holder(conn: Connection, name: str) -> str | None:
    """Who holds (or last held, if it lapsed and nobody took it since) lease ``name``; None if nobody."""
    row = conn.execute(select(relay_leases.c.owner).where(relay_leases.c.name == name)).first()
    return row.owner if row is not None else None


def release_lease_in(conn: Connection, name: str, owner: str) -> None:
    """``release_lease`` inside the caller's transaction (with the effect the lease guarded)."""
    conn.execute(delete(relay_leases).where(relay_leases.c.name == name, relay_leases.c.owner == owner))
