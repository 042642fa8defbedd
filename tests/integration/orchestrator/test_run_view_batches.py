"""The run view applied a batch at a time (``apply_runs``, fewer statements) ends exactly where applying each
event in turn (``apply_run``) does, on SQLite and PostgreSQL: for runs created, progressed, finished,
rejected, cancelled, failed and preempted inside one batch, one job id in two tenants, runs already stored,
late facts, a second request of a run (refused alike), and events in any batch split."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
from sqlalchemy import Engine, select

from privtune.v1 import events_pb2 as ev
from services.common.envelope import Causation, new_envelope
from services.common.store.engine import dispose, open_store
from services.orchestrator.registry_views import apply_run, apply_runs, run_metric_points, run_tags, run_view
from tests.stores import fresh_store_url

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    one, batched = (open_store(fresh_store_url(request, request.param, tmp_path)) for _ in range(2))
    yield one, batched
    dispose(one)
    dispose(batched)


def _history() -> list[ev.EventEnvelope]:
    """Several jobs' events, interleaved as a topic carries them."""
    out: list[ev.EventEnvelope] = []
    versions: dict[str, int] = {}

    def emit(job: str, payload: object, tenant: str = "acme") -> None:
        versions[job] = versions.get(job, 0) + 1
        out.append(new_envelope(payload, subject=job, tenant_id=tenant, source="test",
                                causation=Causation(actor="alice", correlation_id="c"),
                                aggregate_version=versions[job], time=T0 + timedelta(seconds=len(out))))

    def requested(job: str, tenant: str = "acme", tags: dict[str, str] | None = None) -> None:
        emit(job, ev.TrainingRequested(job_id=job, name=f"run-{job}", base_model_id="tiny-llama",
                                       dataset_version_id="dv-1", experiment_tags=tags or {}, gpus=1,
                                       gpu_pool="local"), tenant)

    requested("done", tags={"team": "risk", "model_name": "scorer"})
    requested("other-tenant", tenant="beta")
    emit("done", ev.TrainingQueued(job_id="done", gpu_pool="local", attempt=1, reason="admitted"))
    requested("rejected")
    emit("rejected", ev.TrainingRejected(job_id="rejected", reason="over quota"))
    emit("other-tenant", ev.TrainingQueued(job_id="other-tenant", attempt=1, reason="admitted"), "beta")
    emit("done", ev.TrainingStarted(job_id="done", worker_id="w1", attempt=1, dataset_manifest_sha256="m" * 64,
                                    seed=7, hardware="cpu", library_versions={"torch": "2"}))
    requested("cancelled")
    emit("done", ev.TrainingHeartbeat(job_id="done", attempt=1))
    emit("done", ev.TrainingProgress(job_id="done", step=1, total_steps=3, loss=2.0, eval_loss=2.5))
    emit("cancelled", ev.TrainingQueued(job_id="cancelled", attempt=1, reason="admitted"))
    emit("done", ev.TrainingProgress(job_id="done", step=2, total_steps=3, loss=1.5, epsilon_spent=0.5))
    emit("cancelled", ev.TrainingCancelled(job_id="cancelled", reason="by alice"))
    emit("cancelled", ev.TrainingStarted(job_id="cancelled", worker_id="w2", attempt=1, seed=3))  # late fact
    emit("cancelled", ev.TrainingProgress(job_id="cancelled", step=1, total_steps=3, loss=9.0))  # late fact
    emit("done", ev.TrainingCompleted(job_id="done", steps=3, final_loss=1.0, eval_loss=1.2, initial_eval_loss=2.6,
                                      duration_seconds=12.5))
    emit("done", ev.TrainingProgress(job_id="done", step=3, total_steps=3, loss=0.1))  # after the end: ignored
    requested("queued-only")
    emit("queued-only", ev.TrainingQueued(job_id="queued-only", attempt=1, reason="admitted"))
    requested("shared-id")  # one job id in two tenants: two runs, each changed by its own tenant's events
    requested("shared-id", tenant="beta")
    emit("shared-id", ev.TrainingQueued(job_id="shared-id", attempt=1, reason="admitted"), "beta")
    emit("shared-id", ev.TrainingRejected(job_id="shared-id", reason="no budget"))
    requested("failed")
    emit("failed", ev.TrainingQueued(job_id="failed", attempt=1, reason="admitted"))
    emit("failed", ev.TrainingStarted(job_id="failed", worker_id="w3", attempt=1))
    emit("failed", ev.TrainingFailed(job_id="failed", reason="out of memory", step=4))
    emit("failed", ev.TrainingQueued(job_id="failed", attempt=2, reason="retry"))
    emit("failed", ev.TrainingPreempted(job_id="failed", step=5, worker_id="w3", attempt=2))
    emit("ghost", ev.TrainingQueued(job_id="ghost", attempt=1, reason="admitted"))  # a run never requested here
    return out


def _tables(engine: Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {t.name: sorted(tuple(r) for r in conn.execute(select(t))) for t in (run_view, run_tags, run_metric_points)}


def test_a_second_request_of_a_run_is_refused_in_a_batch_as_one_by_one(stores: tuple[Engine, Engine]) -> None:
    from sqlalchemy.exc import IntegrityError

    one, batched = stores
    first, *_ = _history()
    again = ev.EventEnvelope()
    again.CopyFrom(first)
    again.id = "another-event-id"
    with pytest.raises(IntegrityError), one.begin() as conn:
        apply_run(conn, first)
        apply_run(conn, again)
    with pytest.raises(IntegrityError), batched.begin() as conn:
        apply_runs(conn, [first, again])


@pytest.mark.parametrize("split", [1, 3, 7, 100])
def test_batches_end_where_one_event_at_a_time_does(stores: tuple[Engine, Engine], split: int) -> None:
    one, batched = stores
    history = _history()
    for env in history:
        with one.begin() as conn:
            apply_run(conn, env)
    for start in range(0, len(history), split):
        with batched.begin() as conn:
            apply_runs(conn, history[start:start + split])
    expected, got = _tables(one), _tables(batched)
    assert got == expected
    runs = {(row[0], row[1]): row for row in expected["run_view"]}
    assert len(runs) == 8 and ("acme", "ghost") not in runs  # the history is not trivial: eight runs, points, tags
    assert {("acme", "shared-id"), ("beta", "shared-id")} <= set(runs)
    assert len(expected["run_metric_points"]) >= 4 and len(expected["run_tags"]) == 2
