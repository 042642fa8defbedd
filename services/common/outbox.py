"""The outbox relay: publishes committed events, in commit order, until the bus has them.

When the bus is down the events simply wait in the ``outbox`` table; the relay
retries with backoff and marks rows published only after the bus acknowledged
them. A crash between acknowledgement and marking republishes a few events, which
idempotent consumers ignore.
"""

from __future__ import annotations

import logging
import threading
import uuid

from sqlalchemy import Engine, func, select, update

from services.common.bus import EventBus, Message
from services.common.clock import now_ms
from services.common.errors import BusUnavailable
from services.common.leases import take_lease
from services.common.store.schema import outbox

log = logging.getLogger(__name__)


class OutboxRelay:
    """Moves rows from the ``outbox`` table to the bus. One holds the lease at a time."""

    def __init__(self, engine: Engine, bus: EventBus, *, batch_size: int = 500, lease_ms: int = 10_000,
                 name: str = "outbox") -> None:
        self.engine = engine
        self.bus = bus
        self.batch_size = batch_size
        self.lease_ms = lease_ms
        self.name = name
        self.owner = uuid.uuid4().hex

    def pending(self) -> int:
        """Events committed but not yet acknowledged by the bus."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(outbox.c.published_at_ms.is_(None))).scalar() or 0)

    def _take_lease(self) -> bool:
        return take_lease(self.engine, self.name, self.owner, self.lease_ms)

    def publish_pending(self) -> int:
        """Publish one batch of pending events. Returns how many went out.

        Raises:
            BusUnavailable: the bus did not acknowledge; the rows stay pending.
        """
        if not self._take_lease():
            return 0
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.seq, outbox.c.topic, outbox.c.key, outbox.c.payload)
                .where(outbox.c.published_at_ms.is_(None)).order_by(outbox.c.seq).limit(self.batch_size)
            ).all()
        if not rows:
            return 0
        messages = [Message(r.topic, r.key.encode(), r.payload) for r in rows]
        seqs = [r.seq for r in rows]
        try:
            self.bus.publish(messages)
        except BusUnavailable as exc:
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.seq.in_(seqs))
                             .values(attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000]))
            raise
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.seq.in_(seqs))
                         .values(published_at_ms=now_ms(), last_error=None))
        return len(rows)

    def drain(self) -> int:
        """Publish until nothing is pending. Returns the number published."""
        total = 0
        while True:
            n = self.publish_pending()
            total += n
            if n == 0:
                return total

    def run(self, stop: threading.Event, idle_sleep: float = 0.05, max_backoff: float = 10.0) -> None:
        """Relay until ``stop`` is set, backing off while the bus is unavailable."""
        backoff = 0.5
        while not stop.is_set():
            try:
                n = self.publish_pending()
                backoff = 0.5
            except BusUnavailable as exc:
                log.warning("bus unavailable, %d events wait in the outbox; retrying in %.1fs: %s",
                            self.pending(), backoff, exc)
                stop.wait(backoff)
                backoff = min(backoff * 2, max_backoff)
                continue
            if n == 0:
                stop.wait(idle_sleep)
