"""Training-job aggregate: the job's lifecycle as pure decisions on frozen state, no I/O.

Requested -> Rejected, or Queued -> Scheduled -> Running -> CheckpointSaved* ->
Succeeded | Failed | Cancelled.  Preempted -> Queued -> (resumed from its checkpoint).
A retryable failure is followed by Queued (with a backoff) until retries run out.

The orchestrator writes Requested/Rejected/Queued/Scheduled/StopRequested/Cancelled.
A worker claims a scheduled attempt (``decide_claim``: AttemptClaimed, a compare-and-set
on the stream) before any setup, then reports Started/Progress/CheckpointSaved/Heartbeat
and the outcome on the bus; the orchestrator records a report only if ``decide_report``
accepts it: it must come from the worker that holds the claim on the job's current
attempt. Reports of any other attempt or worker (a worker presumed dead, a second
delivery of the same command) are not recorded, and that worker is told to stop
(``stop_commands``). ``evolve`` fences the same way, so streams recorded before claims
existed fold to the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

from privtune.v1 import events_pb2
from privtune.v1 import training_service_pb2 as api
from services.common.errors import FailedPrecondition

REQUESTED = api.TRAINING_JOB_STATE_REQUESTED
REJECTED = api.TRAINING_JOB_STATE_REJECTED
QUEUED = api.TRAINING_JOB_STATE_QUEUED
SCHEDULED = api.TRAINING_JOB_STATE_SCHEDULED
RUNNING = api.TRAINING_JOB_STATE_RUNNING
SUCCEEDED = api.TRAINING_JOB_STATE_SUCCEEDED
FAILED = api.TRAINING_JOB_STATE_FAILED
CANCELLED = api.TRAINING_JOB_STATE_CANCELLED
PREEMPTED = api.TRAINING_JOB_STATE_PREEMPTED

STATE_NAMES = {v: k.removeprefix("TRAINING_JOB_STATE_").lower() for k, v in api.TrainingJobState.items()}
HOLDS_GPUS = (SCHEDULED, RUNNING)
WORKER_FACTS = ("training_started", "training_progress", "checkpoint_saved", "training_heartbeat",
                "training_completed", "training_failed", "training_preempted")
OUTCOMES = ("training_completed", "training_failed", "training_preempted")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a retryable failure runs again."""

    max_retries: int = 3
    backoff_base_ms: int = 5_000
    backoff_max_ms: int = 300_000

    def backoff_ms(self, failures: int) -> int:
        return min(self.backoff_base_ms * 2 ** max(0, failures - 1), self.backoff_max_ms)


@dataclass(frozen=True)
class TrainingJobState:
    job_id: str = ""
    tenant_id: str = ""
    name: str = ""
    state: int = 0
    request: events_pb2.TrainingRequested = field(default_factory=events_pb2.TrainingRequested)
    requested_by: str = ""
    correlation_id: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    priority: int = 0
    gpus: int = 1
    gpu_pool: str = ""
    estimate: events_pb2.ResourceEstimate = field(default_factory=events_pb2.ResourceEstimate)
    policy_version: str = ""
    violations: tuple[events_pb2.PolicyViolation, ...] = ()
    attempt: int = 0                      # attempts scheduled so far
    scheduled_event_id: str = ""          # fences the current attempt: a worker runs only this command
    executor: str = ""
    queued_at_ms: int = 0
    not_before_ms: int = 0
    queued_reason: str = ""
    last_seen_ms: int = 0                 # last sign of life of the current attempt
    worker_id: str = ""                   # the worker holding the claim on the current attempt
    claim_id: str = ""                    # that claim's token: its reports carry it as causation_id
    stop_reason: str = ""                 # "cancel" or "preempt" once a stop was requested
    step: int = 0
    total_steps: int = 0
    loss: float = 0.0
    eval_loss: float = 0.0
    initial_eval_loss: float = 0.0
    epsilon_spent: float = 0.0
    last_checkpoint_id: str = ""
    started: events_pb2.TrainingStarted = field(default_factory=events_pb2.TrainingStarted)
    started_at_ms: int = 0
    ended_at_ms: int = 0
    artifact_uri: str = ""
    artifact_sha256: str = ""
    error_code: str = ""
    reason: str = ""
    retryable: bool = False
    failures: int = 0
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def state_name(self) -> str:
        return STATE_NAMES.get(self.state, "unspecified")

    def is_final(self, retry: RetryPolicy = RetryPolicy()) -> bool:
        """Nothing more will happen to the job (a failure that will be retried is not final)."""
        if self.state in (SUCCEEDED, REJECTED, CANCELLED):
            return True
        return self.state == FAILED and not self.retry_due(retry)

    def retry_due(self, retry: RetryPolicy = RetryPolicy()) -> bool:
        return self.state == FAILED and self.retryable and self.failures <= retry.max_retries \
            and self.stop_reason != "cancel"


# ------------------------------------------------------------------ decisions


def decide_create(request: events_pb2.TrainingRequested, violations: Iterable[events_pb2.PolicyViolation],
                  queued: events_pb2.TrainingQueued, policy_version: str, policy_sha256: str) -> list:
    """A new job is Requested, then Rejected (naming every broken rule) or Queued."""
    broken = list(violations)
    if broken:
        first = broken[0]
        return [request, events_pb2.TrainingRejected(
            job_id=request.job_id, rule=first.rule, reason=first.reason, remedy=first.remedy, violations=broken,
            policy_version=policy_version, policy_sha256=policy_sha256)]
    return [request, queued]


def decide_schedule(state: TrainingJobState, pool: str, gpus: int, executor: str, gpu_type: str,
                    now_ms: int) -> list:
    if state.state != QUEUED:
        raise FailedPrecondition(f"training job {state.job_id} is {state.state_name}, not queued")
    if state.not_before_ms > now_ms:
        raise FailedPrecondition(f"training job {state.job_id} waits for its retry backoff")
    return [events_pb2.TrainingScheduled(job_id=state.job_id, gpu_pool=pool, gpus=gpus, attempt=state.attempt + 1,
                                         executor=executor, gpu_type=gpu_type,
                                         resume_from_checkpoint_id=state.last_checkpoint_id)]


def decide_cancel(state: TrainingJobState, reason: str) -> list:
    """Queued jobs are cancelled at once; a running one is asked to checkpoint and stop first."""
    if state.is_final():
        raise FailedPrecondition(f"training job {state.job_id} already finished ({state.state_name}); "
                                 "nothing to cancel")
    reason = reason or "cancelled by request"
    if state.state in (REQUESTED, QUEUED, PREEMPTED, FAILED) or (state.state == SCHEDULED and not state.worker_id):
        return [events_pb2.TrainingCancelled(job_id=state.job_id, reason=reason, step=state.step,
                                             checkpoint_id=state.last_checkpoint_id)]
    if state.stop_reason == "cancel":
        return []
    return [events_pb2.TrainingStopRequested(job_id=state.job_id, reason="cancel", detail=reason)]


def decide_preempt(state: TrainingJobState, for_job_id: str) -> list:
    """Ask a running attempt to checkpoint and stop; an attempt no worker has started yet is requeued at once."""
    if state.state not in HOLDS_GPUS or state.stop_reason:
        return []
    if state.state == SCHEDULED and not state.worker_id:
        return [events_pb2.TrainingQueued(job_id=state.job_id, gpu_pool=state.gpu_pool, attempt=state.attempt + 1,
                                          priority=state.priority, gpus=state.gpus, reason="preempted")]
    return [events_pb2.TrainingStopRequested(job_id=state.job_id, reason="preempt", preempting_job_id=for_job_id,
                                             detail=f"preempted for higher-priority job {for_job_id}")]


@dataclass(frozen=True)
class ClaimDecision:
    granted: bool
    events: list
    reason: str = ""


def decide_claim(state: TrainingJobState, attempt: int, worker_id: str, claim_id: str,
                 executor: str = "") -> ClaimDecision:
    """Grant ``attempt`` to claim ``claim_id`` if it is the job's current, unclaimed, unstopped attempt.

    Asking again with the granted ``claim_id`` (a retried call) is granted without a new event; any
    other claim is refused, even one of the same worker (it would run the attempt a second time).
    """
    if not state.exists:
        return ClaimDecision(False, [], "no such training job")
    if state.state not in HOLDS_GPUS or attempt != state.attempt:
        return ClaimDecision(False, [], f"attempt {attempt} is not the job's current one (the job is "
                                        f"{state.state_name}, attempt {state.attempt})")
    if executor and state.executor and executor != state.executor:
        return ClaimDecision(False, [], f"attempt {attempt} runs on the {state.executor} executor, not {executor}")
    if state.worker_id:
        if state.claim_id and state.claim_id == claim_id and state.worker_id == worker_id:
            return ClaimDecision(True, [])
        return ClaimDecision(False, [], f"attempt {attempt} is already claimed by {state.worker_id}")
    if state.stop_reason:
        return ClaimDecision(False, [], f"a stop ({state.stop_reason}) was requested before the attempt started")
    return ClaimDecision(True, [events_pb2.TrainingAttemptClaimed(job_id=state.job_id, attempt=attempt,
                                                                  worker_id=worker_id, claim_id=claim_id)])


def report_fence(state: TrainingJobState, env: events_pb2.EventEnvelope) -> str:
    """Why a worker's report must not be recorded ("" when it may be): the fence by attempt and claim."""
    kind = env.WhichOneof("payload") or ""
    if kind not in WORKER_FACTS:
        return f"{kind or 'an empty payload'} is not a worker report"
    if not state.exists:
        return "no such training job"
    attempt = getattr(env, kind).attempt
    if attempt != state.attempt:
        return f"attempt {attempt} is not the job's current attempt {state.attempt}"
    if state.state not in HOLDS_GPUS:
        return f"the job is {state.state_name}"
    if not state.worker_id:
        return f"attempt {attempt} was never claimed"
    if env.actor != state.worker_id or (state.claim_id and env.causation_id != state.claim_id):
        return f"attempt {attempt} is claimed by {state.worker_id} under another claim, not by this report's sender"
    return ""


def stop_commands(state: TrainingJobState) -> list[events_pb2.TrainingAttemptStop]:
    """The stop the current attempt's worker must receive (re-sent while the attempt is alive)."""
    if state.state not in HOLDS_GPUS or not state.stop_reason or not state.worker_id:
        return []
    return [events_pb2.TrainingAttemptStop(job_id=state.job_id, attempt=state.attempt, reason=state.stop_reason,
                                           worker_id=state.worker_id)]


def decide_follow_up(state: TrainingJobState, now_ms: int, retry: RetryPolicy, lost_after_ms: int,
                     start_timeout_ms: int) -> list:
    """What the controller does next on its own: requeue stopped, failed or abandoned attempts."""
    requeue = dict(job_id=state.job_id, gpu_pool=state.gpu_pool, attempt=state.attempt + 1,
                   priority=state.priority, gpus=state.gpus)
    if state.state == PREEMPTED:
        if state.stop_reason == "cancel":
            return [events_pb2.TrainingCancelled(job_id=state.job_id, reason="cancelled by request",
                                                 step=state.step, checkpoint_id=state.last_checkpoint_id)]
        return [events_pb2.TrainingQueued(reason="preempted", **requeue)]
    if state.retry_due(retry):
        return [events_pb2.TrainingQueued(reason=f"retry after {state.error_code}",
                                          not_before_ms=state.ended_at_ms + retry.backoff_ms(state.failures),
                                          **requeue)]
    if state.state in HOLDS_GPUS:
        # a claimed attempt heartbeats from the claim on; an unclaimed one waits for a worker to take it
        limit = lost_after_ms if state.state == RUNNING or state.worker_id else start_timeout_ms
        if now_ms - state.last_seen_ms > limit:
            if state.stop_reason == "cancel":
                return [events_pb2.TrainingCancelled(job_id=state.job_id, reason="cancelled; its worker was lost",
                                                     step=state.step, checkpoint_id=state.last_checkpoint_id)]
            return [events_pb2.TrainingQueued(reason="worker_lost", **requeue)]
    return []


# ------------------------------------------------------------------ evolution


def evolve(state: TrainingJobState, env: events_pb2.EventEnvelope) -> TrainingJobState:
    """Fold one stored event into the job's state (one ``replace`` per event: a copy of this 42-field
    state costs more than decoding the event, and a ``GetTrainingJob`` folds every event of the job)."""
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    return replace(state, version=env.aggregate_version, updated_at_ms=max(state.updated_at_ms, at),
                   **_changes(state, kind, env, at))


def _changes(s: TrainingJobState, kind: str | None, env: events_pb2.EventEnvelope, at: int) -> dict:
    """What the event changes besides the version and the update time."""
    if kind == "training_requested":
        r = env.training_requested
        return dict(job_id=r.job_id, tenant_id=env.tenant_id, name=r.name, state=REQUESTED, request=r,
                    requested_by=env.actor, correlation_id=env.correlation_id, created_at_ms=at,
                    priority=r.priority, gpus=r.gpus or 1, gpu_pool=r.gpu_pool)
    if kind == "training_rejected":
        e = env.training_rejected
        return dict(state=REJECTED, violations=tuple(e.violations), reason=e.reason, error_code=e.rule,
                    policy_version=e.policy_version, ended_at_ms=at)
    if kind == "training_queued":
        e = env.training_queued
        return dict(state=QUEUED, queued_at_ms=at, not_before_ms=e.not_before_ms, queued_reason=e.reason,
                    estimate=e.estimate if e.HasField("estimate") else s.estimate,
                    policy_version=e.policy_version or s.policy_version, stop_reason="", worker_id="", claim_id="",
                    gpu_pool=e.gpu_pool or s.gpu_pool)
    if kind == "training_scheduled":
        e = env.training_scheduled
        return dict(state=SCHEDULED, attempt=e.attempt, scheduled_event_id=env.id, executor=e.executor,
                    gpu_pool=e.gpu_pool, last_seen_ms=at, worker_id="", claim_id="")
    if kind == "training_attempt_claimed":
        e = env.training_attempt_claimed
        if s.state != SCHEDULED or e.attempt != s.attempt or s.worker_id:
            return {}
        return dict(worker_id=e.worker_id, claim_id=e.claim_id, last_seen_ms=at)
    if kind == "training_stop_requested":
        reason = env.training_stop_requested.reason
        return dict(stop_reason="cancel" if "cancel" in (s.stop_reason, reason) else s.stop_reason or reason)
    if kind == "training_cancelled":
        e = env.training_cancelled
        return dict(state=CANCELLED, reason=e.reason, ended_at_ms=at)
    if kind in WORKER_FACTS:
        return _worker_fact(s, kind, env, at)
    return {}


def _worker_fact(s: TrainingJobState, kind: str, env: events_pb2.EventEnvelope, at: int) -> dict:
    """Facts of the current attempt; late ones from an abandoned attempt only bump the version."""
    if s.state not in (SCHEDULED, RUNNING):
        return {}
    attempt = getattr(env, kind).attempt
    if attempt and attempt != s.attempt:
        return {}
    if kind == "training_started":
        e = env.training_started
        if s.worker_id and e.worker_id != s.worker_id:
            return {}  # another worker than the one holding the claim (decide_report never records it)
        return dict(state=RUNNING, started=e, worker_id=e.worker_id, last_seen_ms=at,
                    started_at_ms=s.started_at_ms or at, total_steps=e.total_steps or s.total_steps)
    if kind == "training_heartbeat":
        e = env.training_heartbeat
        return dict(last_seen_ms=at, step=max(s.step, e.step))
    if kind == "training_progress":
        e = env.training_progress
        return dict(last_seen_ms=at, step=e.step, total_steps=e.total_steps or s.total_steps, loss=e.loss,
                    eval_loss=e.eval_loss or s.eval_loss, epsilon_spent=max(s.epsilon_spent, e.epsilon_spent))
    if kind == "checkpoint_saved":
        e = env.checkpoint_saved
        return dict(last_seen_ms=at, last_checkpoint_id=e.checkpoint_id, step=max(s.step, e.step))
    if kind == "training_completed":
        e = env.training_completed
        return dict(state=SUCCEEDED, artifact_uri=e.artifact_uri, artifact_sha256=e.artifact_sha256,
                    step=e.steps, loss=e.final_loss, eval_loss=e.eval_loss, initial_eval_loss=e.initial_eval_loss,
                    epsilon_spent=max(s.epsilon_spent, e.epsilon_spent), ended_at_ms=at, last_seen_ms=at)
    if kind == "training_failed":
        e = env.training_failed
        return dict(state=FAILED, error_code=e.error_code, reason=e.reason, retryable=e.retryable,
                    failures=s.failures + 1, step=max(s.step, e.step), ended_at_ms=at, last_seen_ms=at)
    if kind == "training_preempted":
        e = env.training_preempted
        return dict(state=PREEMPTED, last_checkpoint_id=e.checkpoint_id or s.last_checkpoint_id,
                    step=max(s.step, e.step), last_seen_ms=at)
    return {}


def fold(events: Iterable[events_pb2.EventEnvelope], state: TrainingJobState | None = None) -> TrainingJobState:
    state = state or TrainingJobState()
    for env in events:
        state = evolve(state, env)
    return state


def experiment_tags(state: TrainingJobState) -> Mapping[str, str]:
    return dict(state.request.experiment_tags)
