"""The training job's write side: load its state, append its events with the view row, in one transaction.

Every writer of a job (the API, the controller, the claim, the report recorder) goes
through ``append_job``, so a job's events, its outbox rows and its ``training_job_view``
row always commit together (see job_view.py).
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Connection

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import Message
from services.common.envelope import Causation, new_envelope
from services.common.topics import TRAINING_CONTROL
from services.orchestrator import job_domain, job_view

SOURCE = "privtune/orchestrator"
STREAM_TYPE = job_view.STREAM_TYPE


def load_job(conn: Connection, tenant_id: str, job_id: str,
             cached: job_domain.TrainingJobState | None = None) -> job_domain.TrainingJobState:
    """The job's current state (folding only what ``cached`` has not seen yet)."""
    cached = cached or job_domain.TrainingJobState()
    return job_domain.fold(eventstore.load_stream(conn, tenant_id, job_id, after_version=cached.version), cached)


def append_job(conn: Connection, tenant_id: str, job_id: str, state: job_domain.TrainingJobState, payloads: list,
               causation: Causation) -> job_domain.TrainingJobState:
    """Append ``payloads`` after ``state.version`` (+ outbox) and update the view. Returns the new state.

    Raises:
        ConcurrencyConflict: another writer appended to the job first.
    """
    return append_envelopes(conn, state, _envelopes(tenant_id, job_id, payloads, causation))


def _envelopes(tenant_id: str, job_id: str, payloads: list, causation: Causation) -> list[events_pb2.EventEnvelope]:
    return [new_envelope(p, subject=job_id, tenant_id=tenant_id, source=SOURCE, causation=causation)
            for p in payloads]


def append_envelopes(conn: Connection, state: job_domain.TrainingJobState,
                     envelopes: Sequence[events_pb2.EventEnvelope]) -> job_domain.TrainingJobState:
    """Append ready-made envelopes (a worker's report keeps its own id, actor and time) and update the view."""
    if not envelopes:
        return state
    eventstore.append(conn, STREAM_TYPE, envelopes, expected_version=state.version)
    new_state = job_domain.fold(envelopes, state)
    job_view.save(conn, new_state, new=state.version == 0)
    return new_state


def append_new_jobs(conn: Connection, jobs: Sequence[tuple[str, str, list, Causation]]
                    ) -> tuple[list[job_domain.TrainingJobState], dict[str, int] | None]:
    """Start each of ``jobs`` (tenant id, job id, its first payloads, causation) as a new stream, with its
    view row, in few statements for the lot: what ``append_job`` from an empty state does for each.
    Returns their states, and their positions where the store told them (``eventstore.append_to_new_streams``).

    Raises:
        ConcurrencyConflict: one of the jobs exists already (nothing of the lot is stored).
    """
    streams = [_envelopes(tenant_id, job_id, payloads, causation) for tenant_id, job_id, payloads, causation in jobs]
    found = eventstore.append_to_new_streams(conn, STREAM_TYPE, streams)
    states = [job_domain.fold(envelopes, job_domain.TrainingJobState()) for envelopes in streams]
    job_view.save_new(conn, states)
    return states, found


def stop_message(tenant_id: str, stop: events_pb2.TrainingAttemptStop, causation: Causation) -> Message:
    """The bus message telling the worker of ``stop.attempt`` to stop (commands are not stored)."""
    env = new_envelope(stop, subject=stop.job_id, tenant_id=tenant_id, source=SOURCE, causation=causation)
    return Message(TRAINING_CONTROL, stop.job_id.encode(), codec.encode(env))
