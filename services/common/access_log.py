"""Every call becomes an access event (invariant 4: every access is audited).

Denials are stored synchronously (``AccessDenied``), before the caller hears the refusal. Allowed
calls (``AccessAllowed``) are queued and stored in batches by a supervised loop, many per
transaction, so auditing a read costs the call no store write. The queue is bounded: when the
store cannot keep up (or is down), new calls wait for room, and after ``FULL_WAIT_S`` are
refused (UNAVAILABLE) rather than served unaudited. A crash loses at most the calls of the last
``FLUSH_EVERY_S`` that had not been flushed; those calls' own effects (events) are not lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from sqlalchemy import Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore, random_ids
from services.common.envelope import Causation, new_envelope
from services.common.errors import Unavailable
from services.common.identity import UNAUTHENTICATED_TENANT, Caller, is_tenant_id
from services.common.store.schema import stored_events
from services.common.supervision import run_loop

log = logging.getLogger(__name__)
SOURCE = "privtune/gateway"
QUEUE_LIMIT = 50_000
FLUSH_EVERY_S = 0.1
FLUSH_BATCH = 1000
FULL_WAIT_S = 2.0


UNAUTHENTICATED_PER_S = 50  # unauthenticated denials recorded one by one per second; the rest are counted


class AccessDenialRecorder:
    """Stores each denial with the outbox, so it reaches the bus like any other event.

    Denials of *unauthenticated* callers (who can be anyone, at any rate) are recorded one by one
    up to ``UNAUTHENTICATED_PER_S`` a second; beyond that they are counted, and the count is
    recorded as one ``AccessDenied`` (rule ``throttled``) per second, so a flood of anonymous calls
    cannot turn into a flood of store writes, yet no denial goes unaccounted for.
    """

    def __init__(self, engine: Engine, unauthenticated_per_s: int = UNAUTHENTICATED_PER_S) -> None:
        self.engine = engine
        self.unauthenticated_per_s = unauthenticated_per_s
        self._window = 0          # the second the budget counts
        self._recorded = 0        # unauthenticated denials recorded one by one in that second
        self._throttled: dict[str, int] = {}  # method -> denials counted, not yet recorded
        self._lock = threading.Lock()

    def __call__(self, metadata: dict[str, str], method: str, reason: str, rule: str) -> None:
        tenant = metadata.get("x-privtune-tenant", "")
        tenant = tenant if is_tenant_id(tenant) else UNAUTHENTICATED_TENANT
        if tenant == UNAUTHENTICATED_TENANT and not self._within_budget(method):
            return
        principal = metadata.get("x-privtune-actor", "")[:128] or "anonymous"
        subject = f"denial-{random_ids.uuid4().hex}"
        env = new_envelope(events_pb2.AccessDenied(principal=principal, method=method, reason=reason[:500], rule=rule),
                           subject=subject, tenant_id=tenant, source=SOURCE,
                           causation=Causation(actor=principal, correlation_id=metadata.get("x-correlation-id", "")))
        self._append(env, f"the denial of {method} for {principal}")

    def _within_budget(self, method: str) -> bool:
        now = int(time.monotonic())
        with self._lock:
            if now != self._window:
                self._window, self._recorded = now, 0
            if self._recorded < self.unauthenticated_per_s:
                self._recorded += 1
                return True
            self._throttled[method] = self._throttled.get(method, 0) + 1
            return False

    def flush_throttled(self) -> int:
        """Record the counted (throttled) denials, one event per method; returns how many were counted."""
        with self._lock:
            counted, self._throttled = self._throttled, {}
        for method, n in counted.items():
            env = new_envelope(events_pb2.AccessDenied(
                principal="anonymous", method=method, rule="throttled",
                reason=f"{n} more unauthenticated calls refused (over {self.unauthenticated_per_s}/s: counted, "
                       "not recorded one by one)"),
                subject=f"denial-{random_ids.uuid4().hex}", tenant_id=UNAUTHENTICATED_TENANT, source=SOURCE,
                causation=Causation(actor="anonymous", correlation_id=""))
            self._append(env, f"{n} throttled denials of {method}")
        return sum(counted.values())

    def run(self, stop: threading.Event) -> None:
        """Record the throttled counts every second until ``stop`` (then once more)."""
        try:
            run_loop("access-denial-counts", lambda: self.flush_throttled() > 0, stop, idle_seconds=1.0)
        finally:
            self.flush_throttled()

    def break_glass(self, caller: Caller, method: str) -> None:
        """Record a call only the break-glass role let through (under the caller's verified tenant).

        Raises:
            Exception: the record could not be stored (the caller refuses the call).
        """
        env = new_envelope(events_pb2.BreakGlassUsed(principal=caller.actor[:128], method=method,
                                                     issuer=caller.issuer[:255]),
                           subject=f"break-glass-{random_ids.uuid4().hex}", tenant_id=caller.tenant_id, source=SOURCE,
                           causation=Causation(actor=caller.actor[:128], correlation_id=""))
        with self.engine.begin() as conn:
            eventstore.append(conn, "access", [env], expected_version=0)

    def _append(self, env: events_pb2.EventEnvelope, what: str) -> None:
        try:
            with self.engine.begin() as conn:
                eventstore.append(conn, "access", [env], expected_version=0)
        except Exception:  # noqa: BLE001 - never turn an access record into a crash; the log keeps it
            log.exception("could not record %s", what)


class AllowedCallRecorder:
    """Queues each allowed call as an ``AccessAllowed`` event; ``run`` stores them in batches."""

    def __init__(self, engine: Engine, limit: int = QUEUE_LIMIT) -> None:
        self.engine = engine
        self.limit = limit
        self.queue: queue.Queue[events_pb2.EventEnvelope] = queue.Queue()  # bounded by admit()
        self.recorded = 0
        self._pending: list[events_pb2.EventEnvelope] = []  # taken from the queue, not yet stored
        self._retrying = False  # the pending batch's last transaction failed (maybe after committing)
        self._lock = threading.Lock()

    def admit(self) -> None:
        """Before a call runs: wait while the queue is full; refuse after ``FULL_WAIT_S`` (the call is not
        run, so nothing happens unaudited).

        Raises:
            Unavailable: reason AUDIT_BACKLOG.
        """
        deadline = time.monotonic() + FULL_WAIT_S
        while self.queue.qsize() >= self.limit:
            if time.monotonic() > deadline:
                log.error("access records are not being stored (%d queued): refusing calls until they are",
                          self.queue.qsize())
                raise Unavailable("the access trail cannot record this call now; retry shortly",
                                  reason="AUDIT_BACKLOG")
            time.sleep(0.05)

    def __call__(self, caller: Caller, method: str, resource: str, outcome: str, duration_ms: int,
                 correlation_id: str) -> None:
        """Queue the record of one call that ran (``admit`` made room before it did)."""
        env = new_envelope(events_pb2.AccessAllowed(
            principal=caller.actor[:128], method=method, resource=resource, issuer=caller.issuer[:255],
            via=caller.via, roles=sorted(caller.roles), outcome=outcome, duration_ms=min(duration_ms, 2**32 - 1)),
            subject=f"access-{random_ids.uuid4().hex}", tenant_id=caller.tenant_id, source=SOURCE,
            causation=Causation(actor=caller.actor[:128], correlation_id=correlation_id))
        self.queue.put(env)

    def flush(self, drain: bool = False) -> int:
        """Store what is queued (one transaction per batch of up to ``FLUSH_BATCH``); returns how many were stored.

        Goes on while its batches are full (a backlog drains at once) and stops after one that is not: calls
        made while that batch waited for the store wait for the next flush, so under load the recorder
        writes a batch per ``FLUSH_EVERY_S``, not one transaction after another (on SQLite each holds the
        one write lock that the API's creates wait for). ``drain`` (at shutdown): until nothing is queued.
        """
        stored = 0
        while True:
            with self._lock:
                while len(self._pending) < FLUSH_BATCH:
                    try:
                        self._pending.append(self.queue.get_nowait())
                    except queue.Empty:
                        break
                if not self._pending:
                    return stored
                batch = list(self._pending)
                full = len(batch) >= FLUSH_BATCH
                with self.engine.begin() as conn:  # a failure keeps the batch pending for the next try
                    if self._retrying:  # the last commit may have landed although it reported a failure
                        stored_ids = set(conn.execute(select(stored_events.c.event_id).where(
                            stored_events.c.event_id.in_([env.id for env in batch]))).scalars())
                        batch = [env for env in batch if env.id not in stored_ids]
                    self._retrying = True
                    eventstore.append_new_streams(conn, "access", batch)
                self._retrying = False
                self._pending.clear()
                stored += len(batch)
                self.recorded += len(batch)
                if not full and not drain:
                    return stored

    def close(self) -> None:
        """Store what is still queued, once nothing serves calls any more (``Platform.stop``, after the server);
        what cannot be stored is counted in a warning, never dropped silently."""
        if self._drain() and self.queue.qsize():
            log.warning("access recorder: %d calls arrived after the last flush at shutdown; not stored",
                        self.queue.qsize())

    def _drain(self) -> bool:
        """``flush(drain=True)``; False (and a warning counting what was not stored) if the store refused."""
        try:
            self.flush(drain=True)
            return True
        except Exception:  # noqa: BLE001 - the store may be gone at shutdown
            log.warning("access recorder: %d calls not stored at shutdown", len(self._pending) + self.queue.qsize(),
                        exc_info=True)
            return False

    def run(self, stop: threading.Event) -> None:
        def step() -> bool:
            self.flush()  # everything queued; then FLUSH_EVERY_S until the next (a batch per interval, not per call)
            return False
        try:
            run_loop("access-recorder", step, stop, idle_seconds=FLUSH_EVERY_S)
        finally:
            self._drain()  # what was queued before the stop, and by calls that ended meanwhile
