"""Read model of training jobs, as ListTrainingJobs serves it and the controller finds work in it.

The row is a pure function of the job aggregate's state (``row_of(fold(events))``) and is
written in the same transaction as the events that changed it (``job_store.append_job``),
so the view and the aggregate cannot disagree: a late fact from an abandoned attempt that
the aggregate ignores changes neither. ``privtune replay`` rebuilds it by folding every
job stream of the event store (``rebuild``); there is no consumer to lag behind.
"""

from __future__ import annotations

from typing import Sequence

from sqlalchemy import Connection, bindparam, insert, select, update

from services.common import eventstore
from services.common.projection import Projection
from services.common.store.direct import insert_rows
from services.common.store.schema import stored_events
from services.common.store.schema import training_job_view as view
from services.orchestrator import job_domain as jd
from services.orchestrator.ledger import month_of

STREAM_TYPE = "training_job"


def row_of(state: jd.TrainingJobState, retry: jd.RetryPolicy = jd.RetryPolicy()) -> dict[str, object]:
    """The view row of a job, from its folded state alone."""
    ended = state.state in (jd.SUCCEEDED, jd.FAILED, jd.CANCELLED, jd.PREEMPTED) and state.ended_at_ms
    if state.started_at_ms and ended and state.ended_at_ms >= state.started_at_ms:
        gpu_hours = (state.ended_at_ms - state.started_at_ms) / 3.6e6 * state.gpus
    else:
        gpu_hours = state.estimate.gpu_hours
    return dict(
        tenant_id=state.tenant_id, job_id=state.job_id, name=state.name, state=state.state,
        gpu_pool=state.gpu_pool, gpus=state.gpus, priority=state.priority, attempt=state.attempt,
        method=state.request.method, base_model_id=state.request.base_model_id,
        dataset_version_id=state.request.dataset_version_id, step=state.step, total_steps=state.total_steps,
        loss=state.loss, epsilon_spent=state.epsilon_spent, gpu_hours=gpu_hours,
        retry_pending=int(state.retry_due(retry)), failures=state.failures, state_version=state.version,
        started_at_ms=state.started_at_ms, month=month_of(state.created_at_ms), reason=state.reason[:2000],
        created_at_ms=state.created_at_ms, updated_at_ms=state.updated_at_ms)


# built once: the row's values are parameters (a statement built per save cost more CPU than its round trip)
_INSERT = insert(view)
_COLUMNS = frozenset(view.c.keys())
_UPDATE = update(view).where(view.c.tenant_id == bindparam("key_tenant"), view.c.job_id == bindparam("key_job"))


def save(conn: Connection, state: jd.TrainingJobState, new: bool = False) -> None:
    """Write the job's row from its state (insert or replace), in the caller's transaction.

    ``new``: the job's first events are being appended in this transaction, so there is no row yet
    (one statement instead of two; the stream's version check already refused a second creator)."""
    if not state.exists or not state.job_id:
        return
    row = row_of(state)
    assert row.keys() == _COLUMNS, "row_of names exactly the view's columns (unknown parameters are dropped)"
    if new:
        insert_rows(conn, view, [row])  # the driver's cursor: no result to wait for (see store.direct.pipelined)
        return
    if conn.execute(_UPDATE, {"key_tenant": state.tenant_id, "key_job": state.job_id, **row}).rowcount == 0:
        conn.execute(_INSERT, row)


def save_new(conn: Connection, states: Sequence[jd.TrainingJobState]) -> None:
    """Insert the rows of jobs whose first events are being appended in this transaction, in few statements
    (``insert_rows``), as ``save(conn, state, new=True)`` would one by one."""
    rows = [row_of(state) for state in states if state.exists and state.job_id]
    insert_rows(conn, view, rows)


def rebuild(source: Connection, target: Connection) -> int:
    """Fold every training-job stream of ``source``'s event store into ``target``'s view. Returns the job count."""
    streams = source.execute(
        select(stored_events.c.tenant_id, stored_events.c.stream_id)
        .where(stored_events.c.stream_type == STREAM_TYPE).distinct()).all()
    for tenant_id, stream_id in streams:
        save(target, jd.fold(eventstore.load_stream(source, tenant_id, stream_id)))
    return len(streams)


PROJECTION = Projection(name="orchestrator.job_view", topics=(), tables=(view,), apply=None, rebuild=rebuild)
