"""Records the outcome a curation worker reports, if it was curated under the job's current claim.

Curation workers hold no credentials for the curation service's store: they publish the
job's outcome (DatasetVersionCreated or CurationFailed) on ``privtune.curation.reports``
with their claim id as the envelope's ``causation_id``. This consumer records it on the
job's stream (keeping the worker's event id) only if ``domain.report_fence`` lets it
through, and gives the job's lease up in the same transaction. A second outcome for a
finished job, or one from a claim that lapsed and was taken over, is dropped (logged).
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
from services.common.topics import CURATION_REPORTS
from services.curation import domain
from services.curation.application import STREAM_TYPE

log = logging.getLogger(__name__)
GROUP = "curation.reports"


def record(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    """The consumer's handler: record ``env`` on the job's stream, or drop it."""
    for _ in range(20):
        if conn.execute(select(stored_events.c.seq).where(stored_events.c.event_id == env.id)).first():
            return  # already recorded
        state = domain.fold(eventstore.load_stream(conn, env.tenant_id, env.subject))
        holder = lease_holder(conn, domain.claim_name(env.subject))
        why = domain.report_fence(state, env, holder)
        if why:
            log.info("curation job %s: not recording %s from %s: %s", env.subject, env.WhichOneof("payload"),
                     env.actor or "?", why)
            return
        recorded = events_pb2.EventEnvelope()
        recorded.CopyFrom(env)
        recorded.aggregate_version = 0
        try:
            with conn.begin_nested():  # a conflict must not abort the consumer's transaction
                eventstore.append(conn, STREAM_TYPE, [recorded], expected_version=state.version)
                release_lease_in(conn, domain.claim_name(env.subject), env.causation_id)
            return
        except ConcurrencyConflict:
            continue
    raise ConcurrencyConflict(f"curation job {env.subject} kept changing while its outcome was recorded")


class CurationReportRecorder:
    def __init__(self, engine: Engine, bus: EventBus) -> None:
        self.engine = engine
        self.bus = bus

    def run(self, stop: threading.Event) -> None:
        consumer = EventConsumer(self.engine, self.bus, GROUP, [CURATION_REPORTS], record)
        try:
            consumer.run(stop)
        finally:
            consumer.close()
