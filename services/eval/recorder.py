"""Records the shard outcome an eval worker reports, if it was computed under the shard's current claim.

Eval workers hold no credentials for the eval service's store: they publish a shard's outcome
(EvalShardCompleted or EvalShardFailed) on ``privtune.eval.reports`` with their claim id as the
envelope's ``causation_id``. This consumer records it on the shard's stream (keeping the
worker's event id) only if ``domain.report_fence`` lets it through, and gives the shard's lease
up in the same transaction. A second outcome for a finished shard, or one from a claim that
lapsed and was taken over, is dropped (logged).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Connection, Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.bus import EventBus
from services.common.consumer import EventConsumer
from services.common.errors import ConcurrencyConflict
from services.common.leases import lease_holder, release_lease_in
from services.common.store.schema import stored_events
from services.common.topics import EVAL_REPORTS
from services.eval import domain

log = logging.getLogger(__name__)
GROUP = "eval.reports"


def record(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    """The consumer's handler: record ``env`` on the shard's stream, or drop it."""
    for _ in range(20):
        if conn.execute(select(stored_events.c.seq).where(stored_events.c.event_id == env.id)).first():
            return  # already recorded
        state = domain.fold_shard(eventstore.load_stream(conn, env.tenant_id, env.subject))
        kind = env.WhichOneof("payload")
        payload = getattr(env, kind) if kind in domain.SHARD_OUTCOMES else None
        name = domain.claim_name(payload.eval_id, payload.shard) if payload is not None else ""
        why = domain.report_fence(state, env, lease_holder(conn, name) if name else None)
        if why:
            log.info("eval shard %s: not recording %s from %s: %s", env.subject[:80], kind, env.actor or "?", why)
            return
        recorded = events_pb2.EventEnvelope()
        recorded.CopyFrom(env)
        recorded.aggregate_version = 0
        try:
            with conn.begin_nested():  # a conflict must not abort the consumer's transaction
                eventstore.append(conn, domain.SHARD_STREAM, [recorded], expected_version=state.version)
                release_lease_in(conn, name, env.causation_id)
            return
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"eval shard {env.subject} kept changing while its outcome was recorded")


class ShardReportRecorder:
    def __init__(self, engine: Engine, bus: EventBus) -> None:
        self.engine = engine
        self.bus = bus

    def run(self, stop: threading.Event) -> None:
        consumer = EventConsumer(self.engine, self.bus, GROUP, [EVAL_REPORTS], record)
        try:
            consumer.run(stop)
        finally:
            consumer.close()
