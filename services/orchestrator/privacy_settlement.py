"""Settle a DP job's reservation on the privacy ledger once the job can no longer run.

A consumer of the training events: on an outcome it folds the job, and when the job is
final it records the epsilon the worker's accountant actually reported (the highest
seen in its progress, so a failed or cancelled run is charged for the steps it took)
in the same transaction as the consumer's dedupe row: exactly once.
"""

from __future__ import annotations

from sqlalchemy import Connection

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation
from services.common.projection import Projection
from services.common.topics import TRAINING_EVENTS
from services.orchestrator import job_domain, ledger
from services.orchestrator.application import LEDGER_STREAM_TYPE, append_events

OUTCOMES = {"training_completed": "completed", "training_failed": "failed", "training_cancelled": "cancelled"}


def settle(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    outcome = OUTCOMES.get(env.WhichOneof("payload") or "")
    if outcome is None:
        return
    job = job_domain.fold(eventstore.load_stream(conn, env.tenant_id, env.subject))
    if not job.request.dp.enabled or not job.is_final():
        return
    month = ledger.month_of(job.created_at_ms)
    stream = ledger.ledger_stream_id(env.tenant_id, month)
    state = ledger.fold(month, eventstore.load_stream(conn, env.tenant_id, stream))
    events = ledger.decide_settle(state, job.job_id, job.epsilon_spent, outcome)
    causation = Causation(actor="privtune/privacy-ledger", correlation_id=env.correlation_id, causation_id=env.id)
    append_events(conn, env.tenant_id, stream, LEDGER_STREAM_TYPE, events, causation, state.version)


PROJECTION = Projection(name="orchestrator.privacy_settlement", topics=(TRAINING_EVENTS,), tables=(), apply=settle,
                        payloads=frozenset(OUTCOMES))
