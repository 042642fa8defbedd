"""The outbox relay: publishes committed events, in commit order, until the bus has them.

When the bus is down the events simply wait in the ``outbox`` table; the relay
retries with backoff and deletes rows only after the bus acknowledged them, so the
table holds what is still to be published and nothing else (the event store keeps
every event; the outbox held a second copy of each payload forever, and its scans
for pending rows walked the dead versions of the rows marked since the last vacuum).
Each event goes out with its id (``Message.id``), so a retry after a failed publish
never makes the bus write a second copy of an event it still holds from the failed
attempt. A crash between acknowledgement and deletion (or with events still in the
producer's queue) republishes a few events, which idempotent consumers ignore.

A published batch is deleted by its event ids, not its ``seq``: SQLite gives a new row the
highest ``seq`` plus one, so once the newest rows are deleted their numbers come back, and a
relay that stalled past its lease and deletes its batch late would otherwise delete a newer,
unpublished row that took one of those numbers (an event id is never reused).

Rows an older relay marked published (``published_at_ms`` set) are deleted by the relay
holding the lease, a batch at a time while it has nothing to publish, and looked for again
every ``RESWEEP_S``. (On SQLite, where ``seq`` numbers come back, a relay of the older
version must not run beside a newer one: its mark by ``seq`` could hide a newer row.)
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from sqlalchemy import Engine, Integer, String, bindparam, delete, func, select, update

from services.common.bus import EventBus, Message
from services.common.chunk_sizes import in_lists
from services.common.clock import now_ms
from services.common.errors import BusUnavailable
from services.common.leases import take_lease
from services.common.supervision import run_loop
from services.common.store.direct import DirectRead, DirectWrite
from services.common.store.engine import reader
from services.common.store.schema import outbox, relay_leases

log = logging.getLogger(__name__)
# after a batch smaller than ``batch_size``, the relay waits until this long after that batch began before
# the next (a trickle of events goes out in a few bus writes a second, not one per event; the first event
# after a quiet spell waits at most the idle sleep, as before). A full batch is followed at once.
BATCH_LINGER_S = 0.02
LEASE_MARGIN_S = 1.0  # lease time left, beyond a publish's longest wait, for a batch to start without renewing
SWEEP_BATCH = 1000    # rows an older relay marked published, deleted per idle step until none are left
RESWEEP_S = 600.0     # how often a relay looks for such rows again (an older relay may still run beside it)
_MAX_IN = 512         # the longest IN list of one delete; a batch of more rows is several statements

_PENDING = DirectRead(
    select(outbox.c.seq, outbox.c.event_id, outbox.c.topic, outbox.c.key, outbox.c.payload)
    .where(outbox.c.published_at_ms.is_(None)).order_by(outbox.c.seq).limit(bindparam("limit", type_=Integer)))
_RENEW = DirectWrite(update(relay_leases).where(relay_leases.c.name == bindparam("name"),
                                                relay_leases.c.owner == bindparam("owner"))
                     .values(lease_until_ms=bindparam("until")))
_SWEEP = DirectWrite(delete(outbox).where(outbox.c.seq.in_(
    select(outbox.c.seq).where(outbox.c.published_at_ms.is_not(None)).limit(bindparam("limit", type_=Integer)))))
_DELETES: dict[int, DirectWrite] = {}


def _delete_of(size: int) -> DirectWrite:
    """``DELETE FROM outbox WHERE event_id IN`` a list of ``size`` parameters (s0, s1, ...), made once per size."""
    found = _DELETES.get(size)
    if found is None:
        found = _DELETES.setdefault(size, DirectWrite(delete(outbox).where(outbox.c.event_id.in_(
            [bindparam(f"s{i}", type_=String(64)) for i in range(size)]))))
    return found


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
        self._swept_at = -RESWEEP_S  # time.monotonic() of the last sweep that found none left (sweep_published)
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
        # a read-only connection: on SQLite the writer's would take the write lock just to read
        with reader(self.engine).connect() as conn:
            rows = _PENDING.rows(conn, {"limit": self.batch_size})
        if not rows:
            return 0
        messages = [Message(topic, key.encode(), bytes(payload), id=event_id)
                    for _seq, event_id, topic, key, payload in rows]
        event_ids = [row[1] for row in rows]
        try:
            self.bus.publish(messages, timeout=self.publish_timeout)
        except BusUnavailable as exc:
            with self.engine.begin() as conn:
                conn.execute(update(outbox).where(outbox.c.event_id.in_(event_ids))
                             .values(attempts=outbox.c.attempts + 1, last_error=str(exc)[:2000]))
            raise
        self._mark(event_ids)
        return len(rows)

    def _mark(self, event_ids: list[str]) -> None:
        """Delete a published batch from the outbox, and renew the lease in the same transaction if it is still
        this relay's. A relay that finds it lost the lease (another took it over) starts no other batch
        without it."""
        started = (time.monotonic(), time.time())
        with self.engine.begin() as conn:
            for params in in_lists(event_ids, _MAX_IN):
                _delete_of(len(params)).run(conn, params)
            renewed = _RENEW.run(conn, {"name": self.name, "owner": self.owner,
                                        "until": now_ms() + self.lease_ms})
        if renewed:
            self._held_from(started)
        else:
            log.warning("relay %s: lost its lease to another relay; it publishes nothing more without it", self.owner)
            self._held_until = (0.0, 0.0)

    def sweep_published(self, limit: int = SWEEP_BATCH) -> int:
        """Delete up to ``limit`` rows that a relay before this version marked published instead of deleting
        them; the number deleted (fewer than ``limit``: none were left when it ran)."""
        with self.engine.begin() as conn:
            return _SWEEP.run(conn, {"limit": limit})

    def _sweep_if_due(self) -> int:
        """``sweep_published`` by the lease holder, until a sweep finds fewer than a batch, then again
        ``RESWEEP_S`` later (an older relay may still run beside this one). The number deleted."""
        if not self._holds_lease() or time.monotonic() - self._swept_at < RESWEEP_S:
            return 0
        swept = self.sweep_published()
        if swept < SWEEP_BATCH:
            self._swept_at = time.monotonic()
        return swept

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
            elif sent == 0:  # nothing to publish: time to clear what older relays left, if due
                return self._sweep_if_due() > 0
            return sent > 0

        run_loop(f"outbox relay {self.name}", step, stop, idle_seconds=idle_sleep, max_backoff=max_backoff)

    def _log_waiting(self) -> None:
        try:
            log.warning("bus unavailable: %d events wait in the outbox", self.pending())
        except Exception:  # noqa: BLE001 - the store may be down too; the loop logs that
            log.warning("bus unavailable; events wait in the outbox")
