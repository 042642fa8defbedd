"""Records what training workers report, if the job's aggregate accepts it.

Workers publish their facts (TrainingStarted, TrainingProgress, CheckpointSaved,
TrainingHeartbeat and the outcome) on ``privtune.training.reports``; they hold no
credentials for the orchestrator's store. This consumer folds the job and records a
report (keeping the worker's event id, actor and time) only when ``job_domain.report_fence``
lets it through: it must come from the worker holding the claim on the job's current
attempt. A fenced report is dropped (logged) and its worker is told to stop on
``privtune.training.control``: a second runner of an attempt, or a worker that was
presumed dead, stops at its next report instead of training on unseen.

The report is recorded, with the job's view row, in the same transaction as the consumer's
dedupe row, so a redelivered report is recorded once. It is recorded at the time the
orchestrator receives it (the worker's own clock says nothing about liveness: a worker
clock a day ahead would keep a dead attempt alive). Each job's folded state is cached
between reports and only newer events are read, so recording costs the same at the
first report and the ten-thousandth.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone

from sqlalchemy import Connection, Engine, select

from privtune.v1 import events_pb2
from services.common.bus import EventBus
from services.common.consumer import EventConsumer
from services.common.envelope import Causation
from services.common.errors import ConcurrencyConflict
from services.common.store.schema import stored_events
from services.common.topics import TRAINING_REPORTS
from services.orchestrator import job_domain, job_store

log = logging.getLogger(__name__)
GROUP = "orchestrator.training_reports"
ACTOR = "privtune/orchestrator-recorder"


class ReportRecorder:
    def __init__(self, engine: Engine, bus: EventBus, max_cached_jobs: int = 10_000) -> None:
        self.engine = engine
        self.bus = bus
        self.max_cached_jobs = max_cached_jobs
        self._stops: dict[tuple[str, str, int, str], events_pb2.TrainingAttemptStop] = {}
        self._states: dict[tuple[str, str], job_domain.TrainingJobState] = {}
        self._lock = threading.Lock()

    def record(self, conn: Connection, env: events_pb2.EventEnvelope) -> None:
        """The consumer's handler: record ``env`` on the job's stream, or fence it off."""
        key = (env.tenant_id, env.subject)
        for _ in range(20):
            if self._recorded(conn, env.id):
                return  # already recorded (a redelivery under another dedupe key, a racing recorder)
            # the cache holds only what was read (committed), never what this transaction appends
            state = job_store.load_job(conn, env.tenant_id, env.subject, self._states.get(key))
            self._cache(key, state)
            why = job_domain.report_fence(state, env)
            if why:
                self._fenced(env, state, why)
                return
            recorded = events_pb2.EventEnvelope()
            recorded.CopyFrom(env)
            recorded.aggregate_version = 0
            recorded.time.FromDatetime(datetime.now(timezone.utc))  # liveness by the orchestrator's clock
            try:
                with conn.begin_nested():  # a conflict must not abort the consumer's transaction
                    job_store.append_envelopes(conn, state, [recorded])
                return
            except ConcurrencyConflict:
                continue  # the controller or the API appended first: judge the report again
        raise ConcurrencyConflict(f"training job {env.subject} kept changing while a report was recorded")

    @staticmethod
    def _recorded(conn: Connection, event_id: str) -> bool:
        return conn.execute(select(stored_events.c.seq).where(stored_events.c.event_id == event_id)).first() \
            is not None

    def _cache(self, key: tuple[str, str], state: job_domain.TrainingJobState) -> None:
        if state.is_final():
            self._states.pop(key, None)
            return
        self._states[key] = state
        while len(self._states) > self.max_cached_jobs:
            del self._states[next(iter(self._states))]

    def _fenced(self, env: events_pb2.EventEnvelope, state: job_domain.TrainingJobState, why: str) -> None:
        kind = env.WhichOneof("payload") or ""
        attempt = getattr(env, kind).attempt if kind in job_domain.WORKER_FACTS else 0
        log.info("training job %s: not recording %s from %s: %s", env.subject, kind, env.actor or "?", why)
        if kind in job_domain.OUTCOMES or not attempt or not env.actor:
            return  # that attempt has ended on its own; nothing to stop
        reason = "finished" if state.is_final() else "superseded"
        with self._lock:
            self._stops[(env.tenant_id, env.subject, attempt, env.actor)] = events_pb2.TrainingAttemptStop(
                job_id=env.subject, attempt=attempt, reason=reason, worker_id=env.actor)

    def send_stops(self) -> None:
        """Publish the stops decided while applying the last batch (after its commit, never inside it)."""
        with self._lock:
            stops, self._stops = self._stops, {}
        if not stops:
            return
        messages = [job_store.stop_message(tenant, stop, Causation(ACTOR, ""))
                    for (tenant, _, _, _), stop in stops.items()]
        try:
            self.bus.publish(messages)
        except Exception:  # noqa: BLE001 - the worker's next report is fenced again and re-sends it
            log.warning("could not send %d stop commands; the next fenced report retries", len(messages))

    def run(self, stop: threading.Event) -> None:
        consumer = EventConsumer(self.engine, self.bus, GROUP, [TRAINING_REPORTS], self.record)
        try:
            consumer.run(stop, after_batch=self.send_stops)
        finally:
            consumer.close()
