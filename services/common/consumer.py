"""Idempotent consumers: apply each event exactly once, dead-letter what cannot be applied.

For every record: decode the envelope (malformed -> dead-letter topic with the
reason), then in ONE store transaction check ``processed_events``, apply the
handler's effect and record the event id. Offsets are committed to the bus only
after the whole batch is applied, so a crash redelivers and the dedupe table makes
the redelivery harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sqlalchemy import Connection, Engine, bindparam, insert, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Message, Record
from services.common.clock import now_ms
from services.common.errors import BusUnavailable, ConcurrencyConflict, MalformedEvent
from services.common.supervision import is_transient
from services.common.store.direct import insert_rows
from services.common.store.schema import processed_events
from services.common.supervision import run_loop
from services.common.topics import DEAD_LETTER

log = logging.getLogger(__name__)

Handler = Callable[[Connection, events_pb2.EventEnvelope], None]
BatchHandler = Callable[[Connection, list[events_pb2.EventEnvelope]], None]
MAX_HANDLER_FAILURES = 5
UNAPPLIED_GRACE_S = 30.0  # longest a failed batch is awaited before an idle member counts as healthy
LAG_CHECK_S = 1.0         # how often a busy consumer asks the bus how far behind it is
# after a batch smaller than a full poll, the next poll waits until this long after the last one began, so
# a steady trickle is applied in a few batches a second (one store transaction and one bus commit each)
# rather than one per event. An event that ends a quiet spell is applied at once: the wait is only
# between batches. A full batch polls again at once (a backlog drains at full speed).
BATCH_LINGER_S = 0.05
_SEEN = select(processed_events.c.event_id).where(processed_events.c.consumer == bindparam("consumer"),
                                                  processed_events.c.event_id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True)
class Lag:
    """How far a consumer is behind its topics, as of ``measured_at`` (``time.time()``).

    ``events``: records on its partitions it has not applied yet. ``seconds``: 0 when caught up,
    else how long ago the newest event it applied was published (an upper bound on how stale
    what it wrote is). A consumer whose loop fails stops measuring: look at ``measured_at``.
    """

    events: int = 0
    seconds: float = 0.0
    measured_at: float = 0.0


@dataclass
class ConsumeStats:
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    passed_by: int = 0  # events of no interest to the handler (``wants``), not applied
    reasons: dict[str, int] = field(default_factory=dict)


def dead_letter_message(record: Record, group: str, error: MalformedEvent) -> Message:
    """The dead-letter copy of ``record``: original bytes, reason and origin in headers."""
    return Message(
        topic=DEAD_LETTER,
        key=record.key,
        value=record.value,
        headers={
            "x-dlq-reason": error.kind.encode(),
            "x-dlq-detail": error.detail[:1000].encode(),
            "x-dlq-topic": record.topic.encode(),
            "x-dlq-partition": str(record.partition).encode(),
            "x-dlq-offset": str(record.offset).encode(),
            "x-dlq-group": group.encode(),
        },
    )


class EventConsumer:
    """Runs ``handler`` for each event of ``topics`` as consumer group ``group``."""

    def __init__(self, engine: Engine, bus: EventBus, group: str, topics: Sequence[str], handler: Handler,
                 *, from_beginning: bool = True, dedupe_key: str | None = None,
                 batch_handler: BatchHandler | None = None, self_deduping: bool = False,
                 wants: Callable[[events_pb2.EventEnvelope], bool] | None = None) -> None:
        self.engine = engine
        # which events the handler does anything with: the others are passed by (their offsets committed with
        # the batch's) without a store transaction, so a follow-up interested in one payload of a busy topic
        # costs the store nothing for the rest
        self.wants = wants
        self.batch_handler = batch_handler
        # the batch handler itself ignores what it already applied (e.g. by a unique key of its own rows):
        # its batches skip the dedupe table
        self.self_deduping = self_deduping and batch_handler is not None
        self.bus = bus
        self.group = group
        self.dedupe_key = dedupe_key or group  # the name applied event ids are recorded under
        self.handler = handler
        self.topics = list(topics)
        self.from_beginning = from_beginning
        self.subscription = bus.subscribe(group, self.topics, from_beginning=from_beginning)
        self.stats = ConsumeStats()
        self.max_handler_failures = MAX_HANDLER_FAILURES
        self._failures: dict[str, int] = {}   # event id -> consecutive failures of the handler on it
        self._unapplied = 0.0                 # when a batch failed that has not been applied since (0: none)
        self.lag = Lag()
        self._applied_through_ms = 0          # publish time of the newest record applied
        self._caught_up_at = 0.0              # time.time() of the last measure that found nothing behind
        self._lag_checked = 0.0

    def poll_and_apply(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:
        """Apply one batch and commit its offsets. Returns the records handled."""
        records = self.subscription.poll(max_records=max_records, timeout=timeout)
        if not records:
            self._measure_lag()
            return records
        dead: list[Message] = []
        decoded: dict[int, events_pb2.EventEnvelope] = {}
        if self.batch_handler is not None:
            decoded = self._apply_batch(records)
        for i, record in enumerate(records):
            if decoded.get(i) is not None and self.batch_handler is not None:
                continue  # applied with the batch
            try:
                env = codec.decode(record.value)
                if self.wants is not None and not self.wants(env):
                    self.stats.passed_by += 1
                    continue
                self._apply_or_give_up(env)
            except MalformedEvent as exc:
                log.warning("dead-lettering %s[%d]@%d for group %s: %s",
                            record.topic, record.partition, record.offset, self.group, exc.kind)
                dead.append(dead_letter_message(record, self.group, exc))
                self.stats.dead_lettered += 1
                self.stats.reasons[exc.kind] = self.stats.reasons.get(exc.kind, 0) + 1
        if dead:
            self.bus.publish(dead)  # before the commit: a crash here redelivers, never loses
        self.subscription.commit(records)
        self._unapplied = 0.0
        self._applied_through_ms = max(self._applied_through_ms, max(r.timestamp_ms for r in records))
        self._measure_lag()
        return records

    def _measure_lag(self) -> None:
        """Ask the bus how many records are left, at most every LAG_CHECK_S (a lag read never fails a batch).

        After an empty poll too: records may have arrived since. A consumer that fails stops measuring,
        and ``measured_at`` then ages. What is behind is at most as old as the later of the newest
        record applied and the last time nothing was behind (so an event that lands on a consumer idle
        for an hour is not an hour late)."""
        now = time.monotonic()
        if now - self._lag_checked < LAG_CHECK_S:
            return
        self._lag_checked = now
        try:
            events = int(self.subscription.backlog())
        except Exception as exc:  # noqa: BLE001 - the next batch measures again
            log.debug("consumer %s: backlog unknown (%s)", self.group, type(exc).__name__)
            return
        wall = time.time()
        if events == 0:
            behind = 0.0
            self._caught_up_at = wall
        elif self._applied_through_ms or self._caught_up_at:
            behind = max(0.0, wall - max(self._applied_through_ms / 1000, self._caught_up_at))
        else:  # nothing applied or caught up yet by this member: as stale as the previous measure says, growing
            behind = self.lag.seconds + (wall - self.lag.measured_at if self.lag.measured_at else 0.0)
        self.lag = Lag(events, behind, wall)

    def _apply_batch(self, records: list[Record]) -> dict[int, events_pb2.EventEnvelope]:
        """Apply every well-formed event of the batch in ONE transaction (with their ids in the dedupe
        table); returns them by index. If the transaction fails for any reason but a transient one,
        nothing is returned and the events are applied one by one, so one bad event is dead-lettered
        alone instead of blocking the batch."""
        assert self.batch_handler is not None
        envs: dict[int, events_pb2.EventEnvelope] = {}
        passed: dict[int, events_pb2.EventEnvelope] = {}
        for i, record in enumerate(records):
            try:
                env = codec.decode(record.value)
            except MalformedEvent:
                continue  # dead-lettered by the per-record path
            if self.wants is not None and not self.wants(env):
                passed[i] = env
            else:
                envs[i] = env
        if not envs:
            self.stats.passed_by += len(passed)
            return passed
        try:
            with self.engine.begin() as conn:
                ids = list(dict.fromkeys(env.id for env in envs.values()))
                seen = set() if self.self_deduping else set(conn.execute(
                    _SEEN, {"consumer": self.dedupe_key, "ids": ids}).scalars())
                fresh, taken = [], set(seen)
                for env in envs.values():
                    if env.id not in taken:
                        taken.add(env.id)
                        fresh.append(env)
                if fresh and self.self_deduping:
                    self.batch_handler(conn, fresh)
                elif fresh:
                    self.batch_handler(conn, fresh)
                    now = now_ms()
                    # multi-row statements, not the driver's executemany (on SQLite a GIL hand-back per row
                    # while the write lock is held)
                    insert_rows(conn, processed_events, [dict(consumer=self.dedupe_key, event_id=env.id,
                                                              processed_at_ms=now) for env in fresh])
        except Exception as exc:
            # a conflict (a follow-up appending to a stream another writer moved) is one event's business:
            # apply the batch one by one, where only that event is retried
            if is_transient(exc) and not isinstance(exc, ConcurrencyConflict):
                self._unapplied = time.monotonic()
                raise
            log.warning("consumer %s: a batch of %d failed (%s); applying its events one by one", self.group,
                        len(envs), type(exc).__name__)
            return {}
        self.stats.applied += len(fresh)
        self.stats.duplicates += len(envs) - len(fresh)
        self.stats.passed_by += len(passed)
        return {**envs, **passed}

    def _apply_or_give_up(self, env: events_pb2.EventEnvelope) -> None:
        """Apply ``env``; an event the handler keeps refusing is set aside instead of blocking its partition.

        A failure that says the store or the bus is away is never held against an event (every event
        fails during an outage). Any other failure on the same event ``max_handler_failures`` times
        (a value the store refuses, a bug the event triggers) dead-letters it with the exception's
        type (never its text, which may quote the event): the batch then publishes the dead-letter
        copy before it commits, so the event is on the dead-letter topic or redelivered, never lost.
        """
        try:
            self._apply_once(env)
        except Exception as exc:
            self._unapplied = time.monotonic()
            if is_transient(exc):
                raise
            failures = self._failures[env.id] = self._failures.get(env.id, 0) + 1
            if failures < self.max_handler_failures:
                raise
            log.error("consumer %s: event %s failed %d times (%s); dead-lettering it", self.group,
                      env.id[:64], failures, type(exc).__name__)
            self._failures.pop(env.id, None)
            raise MalformedEvent("rejected_by_handler", f"{type(exc).__name__} on {failures} attempts") from None
        self._failures.pop(env.id, None)

    def _apply_once(self, env: events_pb2.EventEnvelope) -> None:
        with self.engine.begin() as conn:
            seen = conn.execute(
                select(processed_events.c.event_id)
                .where(processed_events.c.consumer == self.dedupe_key, processed_events.c.event_id == env.id)
            ).first()
            if seen:
                self.stats.duplicates += 1
                return
            if self.batch_handler is not None:
                self.batch_handler(conn, [env])
            else:
                self.handler(conn, env)
            conn.execute(insert(processed_events).values(consumer=self.dedupe_key, event_id=env.id,
                                                         processed_at_ms=now_ms()))
        self.stats.applied += 1

    def run(self, stop: threading.Event, max_records: int = 500,
            after_batch: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set. Any failure (the bus or the store down, a rebalance) is
        retried with backoff, never fatal.

        After a failed batch the member rejoins its group, which rewinds it to the group's
        committed offsets: the failed batch is redelivered, never skipped, and the dedupe
        table makes the part that was already applied harmless. ``after_batch`` runs after
        each committed batch (e.g. to send commands decided while applying it).
        """
        def step() -> bool | None:
            began = time.monotonic()
            records = self.poll_and_apply(max_records=max_records, timeout=0.5)
            if after_batch is not None:
                after_batch()
            if records:
                if len(records) < max_records:
                    stop.wait(BATCH_LINGER_S - (time.monotonic() - began))
                return True
            # nothing came: proof of health only if no failed batch is still waiting to be applied (right
            # after a rejoin a Kafka member polls nothing while its group forms), or if the failure is
            # older than a rebalance takes: the batch then belongs to another member of the group
            waiting = self._unapplied and time.monotonic() - self._unapplied < UNAPPLIED_GRACE_S
            return None if waiting else False

        run_loop(f"consumer {self.group}", step, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _rejoin(self) -> None:
        try:
            self.subscription.close()
        except Exception:  # noqa: BLE001 - the old member may already be gone
            log.debug("closing the failed member of %s", self.group, exc_info=True)
        try:
            self.subscription = self.bus.subscribe(self.group, self.topics, from_beginning=self.from_beginning)
        except BusUnavailable as exc:
            log.warning("consumer %s: cannot rejoin yet: %s", self.group, exc)

    def close(self) -> None:
        self.subscription.close()
