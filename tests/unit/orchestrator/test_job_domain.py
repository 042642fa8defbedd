"""Training-job aggregate: lifecycle folds, cancel, preemption, retries, lost workers, stale facts."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from privtune.v1 import events_pb2 as ev
from services.common.envelope import Causation, new_envelope
from services.common.errors import FailedPrecondition
from services.orchestrator import job_domain as jd

pytestmark = pytest.mark.unit

JOB = "job-1"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)
RETRY = jd.RetryPolicy(max_retries=2, backoff_base_ms=1_000, backoff_max_ms=3_000)
LOST_AFTER_MS = 60_000
START_TIMEOUT_MS = 600_000


def ms(seconds: float) -> int:
    """Milliseconds since epoch, ``seconds`` after T0."""
    return T0_MS + int(seconds * 1000)


def apply(state: jd.TrainingJobState, *payloads, at: float | None = None) -> jd.TrainingJobState:
    """Fold ``payloads`` as the job's next events, one second apart from T0 + version (or all at ``at``)."""
    for payload in payloads:
        version = state.version + 1
        when = T0 + timedelta(seconds=version if at is None else at)
        env = new_envelope(payload, subject=JOB, tenant_id="acme", source="x",
                           causation=Causation(actor="alice", correlation_id="c"), aggregate_version=version,
                           time=when)
        state = jd.evolve(state, env)
    return state


def requested(priority: int = 0) -> ev.TrainingRequested:
    return ev.TrainingRequested(job_id=JOB, name="support-bot", base_model_id="tiny-llama",
                                dataset_version_id="dv-1", priority=priority, gpus=2, gpu_pool="local")


def queued(reason: str = "admitted", attempt: int = 1) -> ev.TrainingQueued:
    return ev.TrainingQueued(job_id=JOB, gpu_pool="local", attempt=attempt, reason=reason, priority=0, gpus=2,
                             estimate=ev.ResourceEstimate(peak_memory_bytes=123), policy_version="p-1")


def scheduled(state: jd.TrainingJobState, now: int = 0) -> ev.TrainingScheduled:
    (event,) = jd.decide_schedule(state, "local", 2, "local", "cpu", now or ms(10_000))
    return event


def started(attempt: int = 1, worker: str = "w1", resumed: str = "") -> ev.TrainingStarted:
    return ev.TrainingStarted(job_id=JOB, worker_id=worker, attempt=attempt, total_steps=30,
                              resumed_from_checkpoint_id=resumed)


def failed(retryable: bool = True, code: str = "worker_crash") -> ev.TrainingFailed:
    return ev.TrainingFailed(job_id=JOB, error_code=code, reason="boom", retryable=retryable, step=3)


def queued_job(priority: int = 0) -> jd.TrainingJobState:
    return apply(jd.TrainingJobState(), requested(priority), queued())


def running_job() -> jd.TrainingJobState:
    state = queued_job()
    return apply(state, scheduled(state), started())


def follow_up(state: jd.TrainingJobState, now: int | None = None) -> list:
    return jd.decide_follow_up(state, ms(4) if now is None else now, RETRY, LOST_AFTER_MS, START_TIMEOUT_MS)


# ------------------------------------------------------------------ lifecycle


def test_the_full_lifecycle_folds_into_each_state_with_its_fields() -> None:
    request = ev.TrainingRequested(job_id=JOB, name="support-bot", base_model_id="tiny-llama",
                                   dataset_version_id="dv-1", priority=5, gpu_pool="local")
    violations: list[ev.PolicyViolation] = []
    created = jd.decide_create(request, violations, queued(), "p-1", "sha")
    assert [type(e).__name__ for e in created] == ["TrainingRequested", "TrainingQueued"]

    state = apply(jd.TrainingJobState(), created[0])
    assert state.exists and state.state == jd.REQUESTED and state.state_name == "requested"
    assert (state.job_id, state.tenant_id, state.name, state.requested_by, state.correlation_id) == (
        JOB, "acme", "support-bot", "alice", "c")
    assert state.priority == 5 and state.gpus == 1 and state.gpu_pool == "local"  # gpus 0 means one
    assert state.created_at_ms == ms(1) and state.version == 1

    state = apply(state, created[1])
    assert state.state == jd.QUEUED and state.queued_reason == "admitted" and state.queued_at_ms == ms(2)
    assert state.estimate.peak_memory_bytes == 123 and state.policy_version == "p-1" and state.attempt == 0

    schedule = scheduled(state)
    assert (schedule.job_id, schedule.gpu_pool, schedule.gpus, schedule.attempt, schedule.executor,
            schedule.gpu_type, schedule.resume_from_checkpoint_id) == (JOB, "local", 2, 1, "local", "cpu", "")
    state = apply(state, schedule)
    assert state.state == jd.SCHEDULED and state.attempt == 1 and state.executor == "local"
    assert state.scheduled_event_id and state.last_seen_ms == ms(3) and state.worker_id == ""

    state = apply(state, started())
    assert state.state == jd.RUNNING and state.state_name == "running" and state.worker_id == "w1"
    assert state.started_at_ms == ms(4) and state.total_steps == 30 and state.started.attempt == 1

    state = apply(state, ev.TrainingProgress(job_id=JOB, step=10, total_steps=30, loss=2.5, eval_loss=2.7,
                                             epsilon_spent=0.4))
    assert (state.step, state.loss, state.eval_loss, state.epsilon_spent, state.last_seen_ms) == (
        10, 2.5, 2.7, pytest.approx(0.4), ms(5))

    state = apply(state, ev.CheckpointSaved(job_id=JOB, checkpoint_id="step-10", step=10, uri="file:///c"))
    assert state.last_checkpoint_id == "step-10" and state.state == jd.RUNNING

    state = apply(state, ev.TrainingCompleted(job_id=JOB, artifact_uri="file:///a", artifact_sha256="a" * 64,
                                              steps=30, final_loss=1.2, eval_loss=1.4, initial_eval_loss=3.0,
                                              epsilon_spent=0.9))
    assert state.state == jd.SUCCEEDED and state.state_name == "succeeded"
    assert (state.artifact_uri, state.artifact_sha256, state.step, state.loss, state.eval_loss,
            state.initial_eval_loss) == ("file:///a", "a" * 64, 30, 1.2, 1.4, 3.0)
    assert state.epsilon_spent == pytest.approx(0.9) and state.ended_at_ms == ms(7) and state.version == 7
    assert state.is_final() and follow_up(state) == []


def test_a_request_that_breaks_rules_is_rejected_naming_every_violation() -> None:
    broken = [ev.PolicyViolation(rule="data.restricted_requires_dp", reason="restricted data", remedy="enable dp"),
              ev.PolicyViolation(rule="limits.max_seq_length", reason="4096 > 1024", remedy="use 1024")]
    events = jd.decide_create(requested(), broken, queued(), "p-7", "sha-7")
    assert [type(e).__name__ for e in events] == ["TrainingRequested", "TrainingRejected"]
    rejected = events[1]
    assert (rejected.rule, rejected.reason, rejected.remedy) == (
        "data.restricted_requires_dp", "restricted data", "enable dp")
    assert [v.rule for v in rejected.violations] == ["data.restricted_requires_dp", "limits.max_seq_length"]
    assert (rejected.policy_version, rejected.policy_sha256) == ("p-7", "sha-7")

    state = apply(jd.TrainingJobState(), *events)
    assert state.state == jd.REJECTED and state.error_code == "data.restricted_requires_dp"
    assert len(state.violations) == 2 and state.policy_version == "p-7" and state.ended_at_ms == ms(2)
    assert state.is_final()
    with pytest.raises(FailedPrecondition, match="not queued"):
        jd.decide_schedule(state, "local", 1, "local", "cpu", ms(10))


# ------------------------------------------------------------------ cancel


def test_cancelling_a_queued_job_cancels_it_at_once() -> None:
    state = apply(queued_job(), ev.CheckpointSaved())  # a stray fact while queued changes nothing
    assert state.state == jd.QUEUED
    (event,) = jd.decide_cancel(state, "wrong data")
    assert isinstance(event, ev.TrainingCancelled) and event.reason == "wrong data"
    state = apply(state, event)
    assert state.state == jd.CANCELLED and state.reason == "wrong data" and state.is_final()
    (event,) = jd.decide_cancel(queued_job(), "")
    assert event.reason == "cancelled by request"


def test_cancelling_a_scheduled_job_no_worker_has_started_cancels_it_at_once() -> None:
    state = queued_job()
    state = apply(state, scheduled(state))
    assert [type(e).__name__ for e in jd.decide_cancel(state, "x")] == ["TrainingCancelled"]


def test_cancelling_a_running_job_asks_it_to_stop_then_cancels_it_once_preempted() -> None:
    state = apply(running_job(), ev.CheckpointSaved(job_id=JOB, checkpoint_id="step-10", step=10))
    (stop,) = jd.decide_cancel(state, "wrong data")
    assert isinstance(stop, ev.TrainingStopRequested)
    assert (stop.reason, stop.detail, stop.preempting_job_id) == ("cancel", "wrong data", "")
    state = apply(state, stop)
    assert state.state == jd.RUNNING and state.stop_reason == "cancel" and not state.is_final()
    assert jd.decide_cancel(state, "again") == []  # already stopping for a cancel
    assert jd.decide_preempt(state, "job-2") == []  # a stopping job is not preempted again
    assert follow_up(state) == []  # still within its heartbeat window
    state = apply(state, ev.TrainingPreempted(job_id=JOB, checkpoint_id="step-12", step=12, worker_id="w1"))
    assert state.state == jd.PREEMPTED and state.last_checkpoint_id == "step-12"
    (cancelled,) = follow_up(state)
    assert isinstance(cancelled, ev.TrainingCancelled)
    assert (cancelled.step, cancelled.checkpoint_id) == (12, "step-12")
    state = apply(state, cancelled)
    assert state.state == jd.CANCELLED and state.is_final() and follow_up(state) == []


def test_a_cancel_while_a_preemption_is_under_way_still_cancels_the_job() -> None:
    state = running_job()
    state = apply(state, *jd.decide_preempt(state, "job-2"))
    assert state.stop_reason == "preempt"
    (stop,) = jd.decide_cancel(state, "wrong data")
    assert stop.reason == "cancel"
    state = apply(state, stop, ev.TrainingPreempted(job_id=JOB, step=5))
    assert state.stop_reason == "cancel"
    assert [type(e).__name__ for e in follow_up(state)] == ["TrainingCancelled"]  # not requeued


def test_cancelling_a_running_job_whose_worker_is_lost_cancels_it() -> None:
    state = apply(running_job(), ev.TrainingStopRequested(job_id=JOB, reason="cancel"))
    (event,) = follow_up(state, now=state.last_seen_ms + LOST_AFTER_MS + 1)
    assert isinstance(event, ev.TrainingCancelled) and "worker was lost" in event.reason


@pytest.mark.parametrize("final", ["completed", "rejected", "cancelled", "failed"])
def test_a_finished_job_cannot_be_cancelled(final: str) -> None:
    state = running_job()
    if final == "completed":
        state = apply(state, ev.TrainingCompleted(job_id=JOB, steps=30))
    elif final == "rejected":
        state = apply(jd.TrainingJobState(), requested(), ev.TrainingRejected(job_id=JOB, rule="r"))
    elif final == "cancelled":
        state = apply(queued_job(), ev.TrainingCancelled(job_id=JOB))
    else:
        state = apply(state, failed(retryable=False))
    with pytest.raises(FailedPrecondition, match="already finished"):
        jd.decide_cancel(state, "too late")


def test_a_failed_job_waiting_for_its_retry_is_cancelled_at_once() -> None:
    state = apply(running_job(), failed(retryable=True))
    assert state.retry_due(RETRY) and not state.is_final(RETRY)
    assert [type(e).__name__ for e in jd.decide_cancel(state, "x")] == ["TrainingCancelled"]


# ------------------------------------------------------------------ preemption


def test_a_preempted_job_is_requeued_and_resumes_from_its_checkpoint() -> None:
    state = apply(running_job(), ev.CheckpointSaved(job_id=JOB, checkpoint_id="step-10", step=10))
    (stop,) = jd.decide_preempt(state, "job-hi")
    assert isinstance(stop, ev.TrainingStopRequested)
    assert (stop.reason, stop.preempting_job_id) == ("preempt", "job-hi") and "job-hi" in stop.detail
    state = apply(state, stop)
    assert state.stop_reason == "preempt" and jd.decide_preempt(state, "job-other") == []
    state = apply(state, ev.TrainingPreempted(job_id=JOB, checkpoint_id="step-14", step=14, worker_id="w1"))
    assert state.state == jd.PREEMPTED and state.last_checkpoint_id == "step-14" and state.step == 14
    assert not state.is_final()

    (requeue,) = follow_up(state)
    assert isinstance(requeue, ev.TrainingQueued)
    assert (requeue.reason, requeue.attempt, requeue.gpu_pool, requeue.gpus, requeue.not_before_ms) == (
        "preempted", 2, "local", 2, 0)
    state = apply(state, requeue)
    assert state.state == jd.QUEUED and state.stop_reason == "" and state.worker_id == ""
    assert state.queued_reason == "preempted" and state.estimate.peak_memory_bytes == 123  # kept from admission

    schedule = scheduled(state)
    assert schedule.attempt == 2 and schedule.resume_from_checkpoint_id == "step-14"
    state = apply(state, schedule, started(attempt=2, worker="w2", resumed="step-14"))
    assert state.state == jd.RUNNING and state.attempt == 2 and state.worker_id == "w2"
    assert state.started.resumed_from_checkpoint_id == "step-14"
    assert state.started_at_ms == ms(4)  # the first start is kept


def test_a_preempted_job_without_a_new_checkpoint_keeps_its_last_one() -> None:
    state = apply(running_job(), ev.CheckpointSaved(job_id=JOB, checkpoint_id="step-10", step=10),
                  ev.TrainingPreempted(job_id=JOB, step=10))
    assert state.last_checkpoint_id == "step-10"


def test_only_jobs_holding_gpus_are_preempted() -> None:
    assert jd.decide_preempt(queued_job(), "job-hi") == []
    state = queued_job()
    assert len(jd.decide_preempt(apply(state, scheduled(state)), "job-hi")) == 1
    assert jd.decide_preempt(apply(running_job(), ev.TrainingCompleted(job_id=JOB)), "job-hi") == []


# ------------------------------------------------------------------ retries


def test_backoff_doubles_and_is_capped() -> None:
    assert [RETRY.backoff_ms(n) for n in (1, 2, 3, 4)] == [1_000, 2_000, 3_000, 3_000]
    default = jd.RetryPolicy()
    assert [default.backoff_ms(n) for n in (0, 1, 2, 8, 30)] == [5_000, 5_000, 10_000, 300_000, 300_000]


def test_a_retryable_failure_is_requeued_after_a_growing_backoff_until_retries_run_out() -> None:
    state = running_job()
    for failures, backoff in ((1, 1_000), (2, 2_000), (3, 3_000)):
        state = apply(state, failed(retryable=True))
        failed_at = state.ended_at_ms
        assert state.state == jd.FAILED and state.failures == failures and state.error_code == "worker_crash"
        if failures > RETRY.max_retries:
            break
        assert state.retry_due(RETRY) and not state.is_final(RETRY)
        (requeue,) = follow_up(state, now=failed_at)
        assert isinstance(requeue, ev.TrainingQueued)
        assert requeue.reason == "retry after worker_crash" and requeue.attempt == failures + 1
        assert requeue.not_before_ms == failed_at + backoff
        state = apply(state, requeue)
        with pytest.raises(FailedPrecondition, match="backoff"):
            jd.decide_schedule(state, "local", 2, "local", "cpu", requeue.not_before_ms - 1)
        state = apply(state, scheduled(state, now=requeue.not_before_ms),
                      started(attempt=failures + 1))
        assert state.state == jd.RUNNING and state.attempt == failures + 1
    assert state.failures == RETRY.max_retries + 1
    assert not state.retry_due(RETRY) and state.is_final(RETRY) and follow_up(state) == []


def test_a_non_retryable_failure_is_final() -> None:
    state = apply(running_job(), failed(retryable=False, code="invalid_input"))
    assert state.state == jd.FAILED and state.error_code == "invalid_input" and state.reason == "boom"
    assert not state.retry_due(RETRY) and state.is_final(RETRY)
    assert follow_up(state) == []


# ------------------------------------------------------------------ lost workers


def test_a_running_job_silent_for_longer_than_lost_after_is_requeued() -> None:
    state = apply(running_job(), ev.TrainingHeartbeat(job_id=JOB, worker_id="w1", step=4, attempt=1))
    assert state.last_seen_ms == ms(5) and state.step == 4
    assert follow_up(state, now=state.last_seen_ms + LOST_AFTER_MS) == []
    (requeue,) = follow_up(state, now=state.last_seen_ms + LOST_AFTER_MS + 1)
    assert isinstance(requeue, ev.TrainingQueued)
    assert (requeue.reason, requeue.attempt, requeue.not_before_ms) == ("worker_lost", 2, 0)


def test_a_scheduled_job_no_worker_starts_is_requeued_after_the_start_timeout() -> None:
    state = queued_job()
    state = apply(state, scheduled(state))
    assert follow_up(state, now=state.last_seen_ms + LOST_AFTER_MS + 1) == []  # lost_after is for running jobs
    assert follow_up(state, now=state.last_seen_ms + START_TIMEOUT_MS) == []
    (requeue,) = follow_up(state, now=state.last_seen_ms + START_TIMEOUT_MS + 1)
    assert (requeue.reason, requeue.attempt) == ("worker_lost", 2)


# ------------------------------------------------------------------ stale facts


def test_facts_of_an_abandoned_attempt_do_not_change_the_state() -> None:
    state = running_job()
    state = apply(state, ev.TrainingQueued(job_id=JOB, reason="worker_lost", attempt=2))
    state = apply(state, scheduled(state))
    assert state.state == jd.SCHEDULED and state.attempt == 2
    before = state
    state = apply(state, started(attempt=1, worker="w1"),
                  ev.TrainingHeartbeat(job_id=JOB, worker_id="w1", step=9, attempt=1))
    assert (state.state, state.worker_id, state.step, state.last_seen_ms) == (
        jd.SCHEDULED, "", 0, before.last_seen_ms)
    assert state.version == before.version + 2  # only the version moves
    state = apply(state, started(attempt=2, worker="w2"))
    assert state.state == jd.RUNNING and state.worker_id == "w2"
    seen = state.last_seen_ms
    state = apply(state, ev.TrainingHeartbeat(job_id=JOB, worker_id="w1", step=9, attempt=1))
    assert state.last_seen_ms == seen and state.step == 0


def test_worker_facts_while_queued_are_ignored() -> None:
    state = apply(running_job(), ev.TrainingQueued(job_id=JOB, reason="worker_lost", attempt=2))
    state = apply(state, ev.TrainingProgress(job_id=JOB, step=7), ev.TrainingCompleted(job_id=JOB, steps=30),
                  ev.TrainingPreempted(job_id=JOB, checkpoint_id="step-7"))
    assert state.state == jd.QUEUED and state.step == 0 and state.last_checkpoint_id == ""


@pytest.mark.parametrize("terminal", ["completed", "failed", "cancelled"])
def test_worker_facts_after_a_terminal_state_are_ignored(terminal: str) -> None:
    state = running_job()
    if terminal == "completed":
        state = apply(state, ev.TrainingCompleted(job_id=JOB, steps=30, artifact_sha256="a" * 64))
    elif terminal == "failed":
        state = apply(state, failed(retryable=False))
    else:
        state = apply(state, ev.TrainingStopRequested(job_id=JOB, reason="cancel"),
                      ev.TrainingPreempted(job_id=JOB, step=3))
        state = apply(state, *follow_up(state))
    final = state
    assert final.is_final(RETRY)
    state = apply(state, ev.TrainingHeartbeat(job_id=JOB, worker_id="w1", step=99, attempt=1),
                  ev.TrainingProgress(job_id=JOB, step=99, loss=9.0),
                  ev.CheckpointSaved(job_id=JOB, checkpoint_id="step-99", step=99),
                  failed(retryable=True), ev.TrainingCompleted(job_id=JOB, steps=99),
                  ev.TrainingPreempted(job_id=JOB, checkpoint_id="step-99"))
    assert (state.state, state.step, state.loss, state.last_checkpoint_id, state.failures, state.artifact_sha256) \
        == (final.state, final.step, final.loss, final.last_checkpoint_id, final.failures, final.artifact_sha256)
    assert state.version == final.version + 6


# ------------------------------------------------------------------ scheduling preconditions


@pytest.mark.parametrize("make", [running_job, lambda: apply(running_job(), ev.TrainingCompleted(job_id=JOB))])
def test_only_queued_jobs_are_scheduled(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FailedPrecondition, match="not queued"):
        jd.decide_schedule(make(), "local", 1, "local", "cpu", ms(10_000))


def test_a_job_in_backoff_is_not_scheduled_until_it_is_over() -> None:
    state = apply(queued_job(), ev.TrainingQueued(job_id=JOB, reason="retry", attempt=2, not_before_ms=ms(100)))
    with pytest.raises(FailedPrecondition, match="retry backoff"):
        jd.decide_schedule(state, "local", 1, "local", "cpu", ms(99))
    assert jd.decide_schedule(state, "local", 1, "local", "cpu", ms(100))[0].attempt == 1


# ------------------------------------------------------------------ finality


def test_is_final_only_when_nothing_more_will_happen() -> None:
    assert not queued_job().is_final() and not running_job().is_final()
    preempted = apply(running_job(), ev.TrainingPreempted(job_id=JOB))
    assert not preempted.is_final()
    assert apply(running_job(), ev.TrainingCompleted(job_id=JOB)).is_final()
    retryable = apply(running_job(), failed(retryable=True))
    assert not retryable.is_final(RETRY)
    assert retryable.is_final(jd.RetryPolicy(max_retries=0))  # no retries allowed
    assert apply(running_job(), failed(retryable=False)).is_final(RETRY)
    assert not jd.TrainingJobState().exists


def test_preempting_an_attempt_no_worker_started_requeues_it_at_once() -> None:
    state = queued_job()
    state = apply(state, scheduled(state))
    (event,) = jd.decide_preempt(state, "job-high")
    assert isinstance(event, ev.TrainingQueued) and event.reason == "preempted" and event.attempt == 2
    assert apply(state, event).state == jd.QUEUED


def test_outcomes_reported_by_an_abandoned_attempt_are_fenced_off() -> None:
    state = running_job()  # attempt 1 runs
    state = apply(state, ev.TrainingQueued(job_id=JOB, gpu_pool="local", attempt=2, reason="worker_lost"))
    state = apply(state, scheduled(state), started(attempt=2, worker="w2"))
    late = apply(state, ev.TrainingCompleted(job_id=JOB, artifact_sha256="zombie", attempt=1),
                 ev.TrainingPreempted(job_id=JOB, checkpoint_id="step-9", attempt=1),
                 ev.TrainingProgress(job_id=JOB, step=99, loss=9.0, attempt=1))
    assert late.state == jd.RUNNING and late.worker_id == "w2" and late.step != 99 and not late.artifact_sha256
    done = apply(late, ev.TrainingCompleted(job_id=JOB, artifact_sha256="real", attempt=2))
    assert done.state == jd.SUCCEEDED and done.artifact_sha256 == "real"
