"""Read model of training jobs, as ListTrainingJobs serves it. Rebuilt by `privtune replay`.

A pure function of the events (replay rebuilds it into an empty store). A job's events
arrive on two topics (``TrainingScheduled`` on the workers' command topic, the rest on
the training events topic), so their order across topics is not guaranteed: the row's
state follows the event with the highest aggregate version (nothing changes a final
state), counters only grow, and an event that arrives before the job's
``TrainingRequested`` creates the row, which the request then fills in. The controller
only uses the view to find jobs in play; it folds their streams for the truth.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from privtune.v1 import events_pb2
from services.common.projection import Projection
from services.common.store.schema import training_job_view as view
from services.common.topics import TRAINING_COMMANDS, TRAINING_EVENTS
from services.orchestrator import job_domain as jd
from services.orchestrator.ledger import month_of

STATE_OF = {"training_requested": jd.REQUESTED, "training_rejected": jd.REJECTED, "training_queued": jd.QUEUED,
            "training_scheduled": jd.SCHEDULED, "training_started": jd.RUNNING, "training_completed": jd.SUCCEEDED,
            "training_failed": jd.FAILED, "training_cancelled": jd.CANCELLED, "training_preempted": jd.PREEMPTED}
FINAL = (jd.SUCCEEDED, jd.REJECTED, jd.CANCELLED)


def _blank(env: events_pb2.EventEnvelope, at: int) -> dict[str, object]:
    return dict(tenant_id=env.tenant_id, job_id=env.subject, name="", state=0, state_version=0, gpu_pool="", gpus=1,
                priority=0, attempt=0, method=0, base_model_id="", dataset_version_id="", step=0, total_steps=0,
                loss=0.0, epsilon_spent=0.0, gpu_hours=0.0, retry_pending=0, failures=0, month=month_of(at),
                reason="", created_at_ms=at, started_at_ms=0, updated_at_ms=at)


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload") or ""
    if not (kind.startswith("training_") or kind == "checkpoint_saved") or kind == "training_heartbeat":
        return
    at = env.time.ToMilliseconds()
    key = (view.c.tenant_id == env.tenant_id, view.c.job_id == env.subject)
    row = conn.execute(select(view).where(*key)).mappings().first()
    if row is None:
        conn.execute(insert(view).values(**_blank(env, at)))
        row = conn.execute(select(view).where(*key)).mappings().first()
    assert row is not None
    values: dict[str, object] = {"updated_at_ms": max(row["updated_at_ms"], at)}
    if kind == "training_requested":
        r = env.training_requested
        values.update(name=r.name, gpu_pool=row["gpu_pool"] or r.gpu_pool, gpus=r.gpus or 1, priority=r.priority,
                      method=r.method, base_model_id=r.base_model_id, dataset_version_id=r.train_dataset_version,
                      created_at_ms=at, month=month_of(at))
    elif kind == "training_progress":
        e = env.training_progress
        if e.step >= row["step"]:
            values.update(step=e.step, total_steps=max(row["total_steps"], e.total_steps), loss=e.loss,
                          epsilon_spent=max(row["epsilon_spent"], e.epsilon_spent))
    elif kind == "training_queued":
        e = env.training_queued
        values["gpu_pool"] = e.gpu_pool or row["gpu_pool"]
        if e.HasField("estimate") and not row["started_at_ms"]:
            values["gpu_hours"] = e.estimate.gpu_hours
    elif kind == "training_scheduled":
        values.update(attempt=max(row["attempt"], env.training_scheduled.attempt),
                      gpu_pool=env.training_scheduled.gpu_pool)
    elif kind == "training_started":
        values.update(started_at_ms=row["started_at_ms"] or at,
                      total_steps=max(row["total_steps"], env.training_started.total_steps))
    elif kind == "training_completed":
        e = env.training_completed
        values.update(step=e.steps, loss=e.final_loss, epsilon_spent=max(row["epsilon_spent"], e.epsilon_spent))
    elif kind == "training_failed":
        e = env.training_failed
        values.update(failures=row["failures"] + 1, reason=e.reason)
    elif kind in ("training_rejected", "training_cancelled"):
        values["reason"] = getattr(env, kind).reason
    if kind in ("training_completed", "training_failed", "training_cancelled") and row["started_at_ms"]:
        values["gpu_hours"] = max(0, at - row["started_at_ms"]) / 3.6e6 * row["gpus"]
    new_state = STATE_OF.get(kind)
    stale = kind == "training_started" and 0 < env.training_started.attempt < row["attempt"]
    if new_state is not None and env.aggregate_version > row["state_version"] and row["state"] not in FINAL \
            and not stale:
        values.update(state=new_state, state_version=env.aggregate_version)
        failures = int(values.get("failures", row["failures"]))  # type: ignore[call-overload]
        retryable = kind == "training_failed" and env.training_failed.retryable
        values["retry_pending"] = int(retryable and failures <= jd.RetryPolicy().max_retries)
    conn.execute(update(view).where(*key).values(**values))


PROJECTION = Projection(name="orchestrator.job_view", topics=(TRAINING_EVENTS, TRAINING_COMMANDS),
                        tables=(view,), apply=apply)
