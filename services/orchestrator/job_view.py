"""Read model of training jobs, as ListTrainingJobs serves it. Rebuilt by `privtune replay`.

Progress facts update the row directly; every other event re-folds the job's
lifecycle events from the store, so the row is right whatever order the two
topics (commands, events) are consumed in.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import Connection, delete, insert, select, update

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.projection import Projection
from services.common.store.schema import stored_events
from services.common.store.schema import training_job_view as view
from services.common.topics import TRAINING_COMMANDS, TRAINING_EVENTS
from services.orchestrator import job_domain

FREQUENT = tuple(events_pb2.EventEnvelope.DESCRIPTOR.fields_by_name[name].message_type.full_name
                 for name in ("training_progress", "training_heartbeat", "checkpoint_saved"))


def month_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m")


def lifecycle(conn: Connection, tenant_id: str, job_id: str) -> job_domain.TrainingJobState:
    """The job folded from its lifecycle events (progress, heartbeats and checkpoints left out)."""
    rows = conn.execute(select(stored_events.c.payload).where(
        stored_events.c.tenant_id == tenant_id, stored_events.c.stream_id == job_id,
        stored_events.c.event_type.not_in(FREQUENT)).order_by(stored_events.c.stream_version)).all()
    return job_domain.fold(codec.decode(r.payload) for r in rows)


def gpu_hours(state: job_domain.TrainingJobState) -> float:
    if state.started_at_ms and state.ended_at_ms:
        return max(0.0, state.ended_at_ms - state.started_at_ms) / 3.6e6 * state.gpus
    return state.estimate.gpu_hours


def row_of(state: job_domain.TrainingJobState) -> dict[str, object]:
    r = state.request
    return dict(tenant_id=state.tenant_id, job_id=state.job_id, name=state.name, state=state.state,
                gpu_pool=state.gpu_pool, gpus=state.gpus, priority=state.priority, attempt=state.attempt,
                method=r.method, base_model_id=r.base_model_id, dataset_version_id=r.train_dataset_version,
                gpu_hours=gpu_hours(state), retry_pending=int(state.retry_due()), month=month_of(state.created_at_ms),
                reason=state.reason, created_at_ms=state.created_at_ms, updated_at_ms=state.updated_at_ms)


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    if not kind or not (kind.startswith("training_") or kind == "checkpoint_saved"):
        return
    key = (view.c.tenant_id == env.tenant_id, view.c.job_id == env.subject)
    if kind == "training_progress":
        e = env.training_progress
        conn.execute(update(view).where(*key, view.c.step <= e.step).values(
            step=e.step, total_steps=e.total_steps, loss=e.loss, epsilon_spent=e.epsilon_spent))
        return
    if kind in ("training_heartbeat", "checkpoint_saved"):
        return
    state = lifecycle(conn, env.tenant_id, env.subject)
    if not state.exists:
        return
    existing = conn.execute(select(view.c.step, view.c.total_steps, view.c.loss, view.c.epsilon_spent)
                            .where(*key)).first()
    row = row_of(state)
    if state.state == job_domain.SUCCEEDED:
        row.update(step=state.step, loss=state.loss, epsilon_spent=state.epsilon_spent)
    elif existing is not None:
        row.update(step=existing.step, loss=existing.loss, epsilon_spent=existing.epsilon_spent)
    else:
        row.update(step=0, loss=0.0, epsilon_spent=0.0)
    row["total_steps"] = max(state.total_steps, existing.total_steps if existing is not None else 0)
    conn.execute(delete(view).where(*key))
    conn.execute(insert(view).values(**row))


PROJECTION = Projection(name="orchestrator.job_view", topics=(TRAINING_EVENTS, TRAINING_COMMANDS),
                        tables=(view,), apply=apply)
