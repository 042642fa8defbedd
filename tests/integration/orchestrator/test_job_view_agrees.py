"""The job read model is the aggregate's fold, whatever order facts arrive in.

``training_job_view`` rows are written by ``job_store.append_job`` in the same transaction
as the events, from the folded state. These tests drive the real write paths (the
application's decisions, the controller's follow-ups, the report recorder's fence) with
random interleavings — late facts of abandoned attempts, facts of attempts not yet
scheduled, reports from workers that do not hold the claim — and check after every step
that the stored row equals ``row_of(fold(stream))`` and that the controller's work list
holds every job that is not final.
"""

from __future__ import annotations

import uuid
from typing import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, or_, select

from privtune.v1 import events_pb2 as ev
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, FailedPrecondition
from services.common.store import open_store
from services.common.store.schema import training_job_view as view
from services.orchestrator import job_domain as jd
from services.orchestrator import job_store, job_view
from services.orchestrator.controller import IN_PLAY
from services.orchestrator.report_recorder import ReportRecorder

pytestmark = pytest.mark.integration
TENANT = "acme"
CONTROLLER = Causation(actor="privtune/orchestrator-controller", correlation_id="c")
WORKERS = ("w1", "w2")
FACTS = ("training_started", "training_progress", "checkpoint_saved", "training_heartbeat",
         "training_completed", "training_failed", "training_preempted")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    e = open_store(f"sqlite:///{tmp_path_factory.mktemp('view')}/store.db")
    yield e
    e.dispose()


def _state(engine: Engine, job_id: str) -> jd.TrainingJobState:
    with engine.connect() as conn:
        return job_store.load_job(conn, TENANT, job_id)


def _append(engine: Engine, job_id: str, payloads: list, causation: Causation = CONTROLLER) -> None:
    if not payloads:
        return
    with engine.begin() as conn:
        job_store.append_job(conn, TENANT, job_id, job_store.load_job(conn, TENANT, job_id), payloads, causation)


def _create(engine: Engine, job_id: str) -> None:
    request = ev.TrainingRequested(job_id=job_id, name="bot", base_model_id="tiny-llama",
                                   dataset_version_id="dv-1", gpu_pool="local", gpus=1)
    queued = ev.TrainingQueued(job_id=job_id, gpu_pool="local", attempt=1, reason="admitted", gpus=1,
                               estimate=ev.ResourceEstimate(gpu_hours=0.25))
    _append(engine, job_id, jd.decide_create(request, [], queued, "p", "sha"))


def _fact(kind: str, job_id: str, attempt: int, worker: str, step: int) -> object:
    fields: dict[str, object] = {"job_id": job_id, "attempt": max(0, attempt)}
    if kind in ("training_started", "training_heartbeat", "training_preempted"):
        fields["worker_id"] = worker
    if kind == "training_progress":
        fields.update(step=step, total_steps=30, loss=1.0 / (step + 1))
    if kind == "checkpoint_saved":
        fields.update(checkpoint_id=f"step-{step}", step=step)
    if kind == "training_completed":
        fields.update(steps=step, artifact_sha256="a" * 64)
    if kind == "training_failed":
        fields.update(error_code="worker_crash", reason="the training process crashed", retryable=step % 2 == 0)
    name = "".join(p.capitalize() for p in kind.split("_"))
    return getattr(ev, name)(**fields)


def _report(engine: Engine, recorder: ReportRecorder, job_id: str, kind: str, attempt: int, worker: str,
            step: int) -> None:
    env = new_envelope(_fact(kind, job_id, attempt, worker, step), subject=job_id, tenant_id=TENANT,  # type: ignore[arg-type]
                       source="privtune/gpu-worker",
                       causation=Causation(actor=worker, correlation_id="c", causation_id=f"claim-{worker}"))
    with engine.begin() as conn:
        recorder.record(conn, env)


def _check(engine: Engine, job_id: str) -> None:
    with engine.connect() as conn:
        folded = jd.fold(eventstore.load_stream(conn, TENANT, job_id))
        row = conn.execute(select(view).where(view.c.tenant_id == TENANT, view.c.job_id == job_id)).mappings().one()
        work = {r.job_id for r in conn.execute(select(view.c.job_id).where(
            or_(view.c.state.in_(IN_PLAY), view.c.retry_pending == 1)))}
    assert dict(row) == job_view.row_of(folded)
    assert (job_id in work) == (not folded.is_final()), "the controller's work list must hold every live job"


ACTIONS = st.one_of(
    st.tuples(st.just("schedule")),
    st.tuples(st.just("claim"), st.sampled_from(WORKERS), st.integers(-1, 1)),
    st.tuples(st.just("report"), st.sampled_from(FACTS), st.integers(-2, 1), st.sampled_from(WORKERS),
              st.integers(0, 40)),
    st.tuples(st.just("raw"), st.sampled_from(FACTS), st.integers(-2, 1), st.sampled_from(WORKERS),
              st.integers(0, 40)),
    st.tuples(st.just("cancel")),
    st.tuples(st.just("preempt")),
    st.tuples(st.just("follow_up"), st.integers(0, 4_000_000)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(actions=st.lists(ACTIONS, min_size=1, max_size=25))
def test_view_equals_the_fold_of_the_aggregate_under_any_interleaving(engine: Engine, actions: list) -> None:
    job_id = f"tj-{uuid.uuid4().hex[:24]}"
    recorder = ReportRecorder(engine, bus=None)  # type: ignore[arg-type]  # stops are not sent here
    _create(engine, job_id)
    _check(engine, job_id)
    for action in actions:
        state = _state(engine, job_id)
        now = state.updated_at_ms + 1
        try:
            if action[0] == "schedule":
                _append(engine, job_id, jd.decide_schedule(state, "local", 1, "local", "cpu", now + 10**9))
            elif action[0] == "claim":
                _append(engine, job_id, jd.decide_claim(state, max(0, state.attempt + action[2]), action[1],
                                                        f"claim-{action[1]}").events,
                        Causation(actor=action[1], correlation_id="c"))
            elif action[0] == "report":  # through the recorder's fence, as the platform does
                _, kind, offset, worker, step = action
                _report(engine, recorder, job_id, kind, state.attempt + offset, worker, step)
            elif action[0] == "raw":  # a fact stored without the fence (streams written before claims existed)
                _, kind, offset, worker, step = action
                _append(engine, job_id, [_fact(kind, job_id, state.attempt + offset, worker, step)],
                        Causation(actor=worker, correlation_id="c"))
            elif action[0] == "cancel":
                _append(engine, job_id, jd.decide_cancel(state, "test"))
            elif action[0] == "preempt":
                _append(engine, job_id, jd.decide_preempt(state, "other-job"))
            elif action[0] == "follow_up":
                _append(engine, job_id, jd.decide_follow_up(state, state.last_seen_ms + action[1], jd.RetryPolicy(),
                                                            60_000, 600_000))
        except (FailedPrecondition, ConcurrencyConflict):
            pass  # a decision the aggregate refuses changes nothing
        _check(engine, job_id)


def test_a_late_completion_from_an_abandoned_attempt_leaves_view_and_aggregate_equal(engine: Engine) -> None:
    """Attempt 1's worker is presumed dead and the job requeued; its late TrainingCompleted changes nothing."""
    job_id = f"tj-{uuid.uuid4().hex[:24]}"
    recorder = ReportRecorder(engine, bus=None)  # type: ignore[arg-type]
    _create(engine, job_id)
    state = _state(engine, job_id)
    _append(engine, job_id, jd.decide_schedule(state, "local", 1, "local", "cpu", state.updated_at_ms))
    _append(engine, job_id, jd.decide_claim(_state(engine, job_id), 1, "w1", "claim-w1").events, Causation("w1", "c"))
    _report(engine, recorder, job_id, "training_started", 1, "w1", 0)
    state = _state(engine, job_id)
    _append(engine, job_id, jd.decide_follow_up(state, state.last_seen_ms + 120_000, jd.RetryPolicy(),
                                                60_000, 600_000))
    assert _state(engine, job_id).state == jd.QUEUED
    _report(engine, recorder, job_id, "training_completed", 1, "w1", 30)   # the zombie finishes
    _report(engine, recorder, job_id, "training_progress", 1, "w1", 31)
    state = _state(engine, job_id)
    assert state.state == jd.QUEUED and state.attempt == 1
    _check(engine, job_id)
    with engine.connect() as conn:
        row = conn.execute(select(view.c.state).where(view.c.job_id == job_id)).scalar_one()
        kinds = [e.WhichOneof("payload") for e in eventstore.load_stream(conn, TENANT, job_id)]
    assert row == jd.QUEUED and "training_completed" not in kinds
    assert (TENANT, job_id, 1, "w1") in recorder._stops  # the zombie is told to stop
    # the job is still in the controller's work list and gets a new attempt
    state = _state(engine, job_id)
    _append(engine, job_id, jd.decide_schedule(state, "local", 1, "local", "cpu", state.updated_at_ms + 10**9))
    assert _state(engine, job_id).attempt == 2


def test_a_second_worker_cannot_claim_or_report_for_an_attempt_it_does_not_hold(engine: Engine) -> None:
    job_id = f"tj-{uuid.uuid4().hex[:24]}"
    recorder = ReportRecorder(engine, bus=None)  # type: ignore[arg-type]
    _create(engine, job_id)
    state = _state(engine, job_id)
    _append(engine, job_id, jd.decide_schedule(state, "local", 1, "local", "cpu", state.updated_at_ms))
    first = jd.decide_claim(_state(engine, job_id), 1, "w1", "claim-w1")
    _append(engine, job_id, first.events, Causation("w1", "c"))
    second = jd.decide_claim(_state(engine, job_id), 1, "w2", "claim-w2")
    again = jd.decide_claim(_state(engine, job_id), 1, "w1", "claim-w1")
    rerun = jd.decide_claim(_state(engine, job_id), 1, "w1", "another-claim-of-w1")
    assert first.granted and not second.granted and "claimed by w1" in second.reason
    assert again.granted and again.events == []  # a retried claim is granted without a new event
    assert not rerun.granted  # the same worker claiming anew would run the attempt a second time
    _report(engine, recorder, job_id, "training_started", 1, "w2", 0)
    _report(engine, recorder, job_id, "training_completed", 1, "w2", 30)
    # w1's name on a report of another claim (a second run of w1, or a forged sender) is not recorded either
    forged = new_envelope(_fact("training_completed", job_id, 1, "w1", 30), subject=job_id, tenant_id=TENANT,  # type: ignore[arg-type]
                          source="x", causation=Causation(actor="w1", correlation_id="c", causation_id="stale"))
    with engine.begin() as conn:
        recorder.record(conn, forged)
    state = _state(engine, job_id)
    assert state.state == jd.SCHEDULED and state.worker_id == "w1"
    _check(engine, job_id)
