"""The outbox relay: publishes committed events, in commit order, until the bus has them.

When the bus is down the events simply wait in the ``outbox`` table; the relay
retries with backoff and marks rows published only after the bus acknowledged
them. Each event goes out with its id (``Message.id``), so a retry after a failed
publish never makes the bus write a second copy of an event it still holds from the
failed attempt. A crash between acknowledgement and marking (or with events still in
the producer's queue) republishes a few events, which idempotent consumers ignore.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from sqlalchemy import Engine, func, select, update

from services.common.bus import EventBus, Message
from services.common.clock import now_ms
from services.common.errors import BusUnavailable
from services.common.leases import take_lease
from services.common.supervision import run_loop
from services.common.store.schema import outbox, relay_leases

log = logging.getLogger(__name__)
# after a batch smaller than ``batch_size``, the relay waits until this long after that batch began before
# the next (a trickle of events goes out in a few bus writes a second, not one per event; the first event
# after a quiet spell waits at most the idle sleep, as before). A full batch is followed at once.
BATCH_LINGER_S = 0.02
LEASE_MARGIN_S = 1.0  # lease time left, beyond a publish's longest wait, for a batch to start without renewing


class OutboxRelay:
    """Moves rows from the ``outbox`` table to the bus. One holds the lease at a time."""

    def __init__(self, engine: Engine, bus: EventBus, *, batch_size: int = 500, lease_ms: int = 10_000,
                 name: str = "outbox", publish_timeout: float | None = None) -> None:
        self.engine = engine
        self.bus = bus
        self.batch_size = batch_size
        self.lease_ms = lease_ms
        self.name = name
        # How long one publish waits for acknowledgements: well inside the lease, so another relay
        # never takes over (and re-sends) a batch this one is still waiting for. A bus that still
        # holds the batch when this runs out keeps it, and the retry waits for it (Message.id).
        self.publish_timeout = publish_timeout if publish_timeout is not None else lease_ms / 2000
        self.owner = uuid.uuid4().hex
        # until when (time.monotonic(), time.time()) this relay holds the lease, as far as it knows
        self._held_until = (0.0, 0.0)

    def pending(self) -> int:
        """Events committed but not yet acknowledged by the bus."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(outbox.c.published_at_ms.is_(None))).scalar() or 0)

    def _holds_lease(self) -> bool:
        """Whether the lease is this relay's for longer than a publish may wait (``publish_timeout``) plus
        ``LEASE_MARGIN_S``: then a batch may start without a lease write of its own. Each batch's mark
        renews the lease in its own transaction (``_mark``), so a busy relay writes no lease rows apart."""
        left = (until - now for until, now in zip(self._held_until, (time.monotonic(), time.time())))
        return all(s > self.publish_timeout + LEASE_MARGIN_S for s in left)

    def _held_from(self, started: tuple[float, float]) -> None:
        self._held_until = (started[0] + self.lease_ms / 1000, started[1] + self.lease_ms / 1000)

    def _take_lease(self) -> bool:
        if self._holds_lease():
            return True
        started = (time.monotonic(), time.time())  # both: a suspended machine's monotonic clock stands still
        taken = take_lease(self.engine, self.name, self.owner, self.lease_ms)
        if taken:
            self._held_from(started)
        else:
            self._held_until = (0.0, 0.0)
        return taken

    def publish_pending(self) -> int:
        """Publish one batch of pending events. Returns how many went out.

        Raises:
            BusUnavailable: the bus did not acknowledge; the rows stay pending.
        """
        if not self._take_lease():
            return 0
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.seq, outbox.c.event_id, outbox.c.topic, outbox.c.key, outbox.c.payload)
                .where(outbox.c.published_at_ms.is_(None)).order_by(outbox.c.seq).limit(self.batch_size)
            ).all()
        if not rows:
            return 0
        messages = [Message(r.topic, r.key.encode(), r.payload, id=r.event_id) for r in rows]
        seqs = [r.seq for r in rows]
        try:
            self.bus.publish(messages, timeout=self.publish_timeout)
        except BusUnavailable as exc:
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.seq.in_(seqs))
                             .values(attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000]))
            raise
        self._mark(seqs)
        return len(rows)

    def _mark(self, seqs: list[int]) -> None:
        """Mark a published batch, and renew the lease in the same transaction if it is still this relay's.
        A relay that finds it lost the lease (another took it over) starts no other batch without it."""
        started = (time.monotonic(), time.time())
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.seq.in_(seqs))
                         .values(published_at_ms=now_ms(), last_error=None))
            renewed = conn.execute(update(relay_leases).where(relay_leases.c.name == self.name,
                                                              relay_leases.c.owner == self.owner)
                                   .values(lease_until_ms=now_ms() + self.lease_ms)).rowcount
        if renewed:
            self._held_from(started)
        else:
            log.warning("relay %s: lost its lease to another relay; it publishes nothing more without it", self.owner)
            self._held_until = (0.0, 0.0)

    def drain(self) -> int:
        """Publish until nothing is pending. Returns the number published."""
        total = 0
        while True:
            n = self.publish_pending()
            total += n
            if n == 0:
                return total

    def run(self, stop: threading.Event, idle_sleep: float = 0.05, max_backoff: float = 10.0) -> None:
        """Relay until ``stop`` is set. Any failure (the bus down, the store restarting, a lock
        timeout) is logged and retried with backoff: the relay never stops on its own."""
        def step() -> bool:
            began = time.monotonic()
            try:
                sent = self.publish_pending()
            except BusUnavailable:
                self._held_until = (0.0, 0.0)  # take it again before the retry: the outage may outlast it
                self._log_waiting()
                raise
            if 0 < sent < self.batch_size:
                stop.wait(BATCH_LINGER_S - (time.monotonic() - began))
            return sent > 0

        run_loop(f"outbox relay {self.name}", step, stop, idle_seconds=idle_sleep, max_backoff=max_backoff)

    def _log_waiting(self) -> None:
        try:
            log.warning("bus unavailable: %d events wait in the outbox", self.pending())
        except Exception:  # noqa: BLE001 - the store may be down too; the loop logs that
            log.warning("bus unavailable; events wait in the outbox")
