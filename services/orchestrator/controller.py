"""The orchestrator's control loop: schedule queued jobs, preempt, requeue, retry, notice dead workers.

Level-triggered, like a Kubernetes controller: each tick folds the current state of
every job that is still in play (from the event store, so it is never behind) and acts
on it. Every action is an event appended with optimistic concurrency, so a tick that
races a worker or an API call simply tries again next tick; two controllers never act
at once (a lease in the store).

Placement is decided by the pure :func:`scheduling.plan_schedule` over pools, quotas and
priorities; a placed job gets ``TrainingScheduled``, which the outbox publishes on the
workers' command topic (local executor) or which the Kubernetes executor submits.

A requested stop (cancel, preemption) reaches the worker holding the attempt as a
``TrainingAttemptStop`` on ``privtune.training.control``, re-sent every
``stop_resend_seconds`` while the attempt still holds its devices: a worker that missed
a copy (it was reconnecting) gets the next one.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from typing import Callable, Protocol

from sqlalchemy import Engine, or_, select

from services.common.bus import EventBus, Message
from services.common.clock import now_ms
from services.common.envelope import Causation
from services.common.errors import BusUnavailable, ConcurrencyConflict, PrivtuneError
from services.common.leases import take_lease
from services.common.store.direct import DirectRead
from services.common.store.engine import reader
from services.common.store.schema import training_job_view
from services.common.supervision import run_loop
from services.orchestrator import job_domain, job_store, scheduling
from services.orchestrator.policy_files import load_policy
from services.orchestrator.settings import OrchestratorSettings

log = logging.getLogger(__name__)
ACTOR = "privtune/orchestrator-controller"
IN_PLAY = (job_domain.REQUESTED, job_domain.QUEUED, job_domain.SCHEDULED, job_domain.RUNNING,
           job_domain.PREEMPTED)
_V = training_job_view.c
# every job in play, with the version its view row has (one read per tick, on the driver's cursor: thousands of rows)
_IN_PLAY_ROWS = DirectRead(select(_V.tenant_id, _V.job_id, _V.state_version).where(
    or_(*(_V.state == state for state in IN_PLAY), _V.retry_pending == 1)))


class Launcher(Protocol):
    """Starts a scheduled attempt outside the bus (the local executor needs nothing: workers consume the command)."""

    def launch(self, state: job_domain.TrainingJobState, placed: scheduling.Place) -> None: ...

    def stop(self, state: job_domain.TrainingJobState) -> None: ...


@dataclass
class TickReport:
    placed: list[str] = field(default_factory=list)
    preempted: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)


class Controller:
    def __init__(self, engine: Engine, settings: OrchestratorSettings,
                 launchers: dict[str, Launcher] | None = None, clock: Callable[[], int] = now_ms,
                 bus: EventBus | None = None, stop_resend_seconds: float = 5.0) -> None:
        self.engine = engine
        self.settings = settings
        self.launchers = launchers or {}
        self.clock = clock
        self.bus = bus
        self.stop_resend_ms = int(stop_resend_seconds * 1000)
        self.owner = uuid.uuid4().hex
        self._states: dict[tuple[str, str], job_domain.TrainingJobState] = {}
        self._stops_sent: dict[tuple[str, str, int], int] = {}  # (tenant, job, attempt) -> when last sent
        self._appends_tried = 0  # appends this controller tried (committed, or lost to another writer)

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """Tick every ``tick_seconds`` until stopped; a failed tick (the store briefly down) is retried."""
        def step() -> bool:
            self.tick()
            return False

        run_loop("orchestrator controller", step, stop, idle_seconds=self.settings.tick_seconds)

    def tick(self) -> TickReport:
        report = TickReport()
        if not self._take_lease():
            return report
        now = self.clock()
        states = self._refresh()
        tried = self._appends_tried
        for state in states:
            self._follow_up(state, now, report)
        # a follow-up (a retry, a lost worker, a cancel) took time and may have met someone else's change:
        # plan on a fresh read then, not on this tick's first one (a needless preemption otherwise)
        states = self._refresh() if self._appends_tried != tried else self._current(states)
        self._schedule(states, now, report)
        self._send_stops(self._current(states), now)
        return report

    # ------------------------------------------------------------------ state

    def _take_lease(self, lease_ms: int = 10_000) -> bool:
        return take_lease(self.engine, "orchestrator.controller", self.owner, lease_ms)

    def _refresh(self) -> list[job_domain.TrainingJobState]:
        """Current state of every job still in play (the read model finds them, the store has the truth).

        A job whose view row still has the version this controller folded last is not read again:
        the row is written in the same transaction as the job's events (job_view.py), so an equal
        version means no new event. Only the jobs that changed cost a read, so a tick over a queue
        of thousands of waiting jobs is one query, not thousands; and it reads through the store's
        reader, never holding SQLite's write lock while it does.
        """
        with reader(self.engine).connect() as conn:
            versions = {(tenant, job): version for tenant, job, version in _IN_PLAY_ROWS.rows(conn, {})}
            keys = set(versions) | {k for k, s in self._states.items() if not s.is_final(self.settings.retry)}
            states = []
            for key in keys:
                cached = self._states.get(key)
                if cached is not None and versions.get(key) == cached.version:
                    state = cached
                else:
                    state = job_store.load_job(conn, key[0], key[1], cached)
                if not state.exists:
                    continue
                if state.is_final(self.settings.retry):
                    self._states.pop(key, None)
                    continue
                self._states[key] = state
                states.append(state)
        return states

    def _current(self, states: list[job_domain.TrainingJobState]) -> list[job_domain.TrainingJobState]:
        """``states`` as this tick's own appends left them, without the finished ones: what reading every
        job in play again would give, but for changes by others meanwhile, which the next tick sees (as it
        would had they come a moment later). A quiet tick reads the view once, not once per step: over a
        queue of thousands of jobs, each read was thousands of rows."""
        current = []
        for state in states:
            key = (state.tenant_id, state.job_id)
            state = self._states.get(key, state)
            if state.is_final(self.settings.retry):
                self._states.pop(key, None)
                continue
            current.append(state)
        return current

    def _append(self, state: job_domain.TrainingJobState, payloads: list, reason: str) -> bool:
        if not payloads:
            return False
        self._appends_tried += 1
        causation = Causation(actor=ACTOR, correlation_id=state.correlation_id or state.job_id,
                              causation_id=reason)
        try:
            with self.engine.begin() as conn:
                appended = job_store.append_job(conn, state.tenant_id, state.job_id, state, payloads, causation)
            self._states[(state.tenant_id, state.job_id)] = appended  # committed: the job as it is now
            return True
        except ConcurrencyConflict:
            return False  # a worker or the API wrote first; the next tick sees it

    def _send_stops(self, states: list[job_domain.TrainingJobState], now: int) -> None:
        """Tell the workers of attempts that must stop; again every stop_resend_seconds until they do."""
        due: dict[tuple[str, str, int], Message] = {}
        live = set()
        for state in states:
            for command in job_domain.stop_commands(state):
                key = (state.tenant_id, state.job_id, command.attempt)
                live.add(key)
                if now - self._stops_sent.get(key, now - self.stop_resend_ms) < self.stop_resend_ms:
                    continue
                due[key] = job_store.stop_message(state.tenant_id, command,
                                                  Causation(actor=ACTOR, correlation_id=state.correlation_id))
        self._stops_sent = {k: v for k, v in self._stops_sent.items() if k in live}
        if not due or self.bus is None:
            return
        try:
            self.bus.publish(list(due.values()))
        except BusUnavailable as exc:
            log.warning("could not send %d stop commands (retried next tick): %s", len(due), exc)
            return
        self._stops_sent.update({key: now for key in due})

    # ------------------------------------------------------------------ actions

    def _follow_up(self, state: job_domain.TrainingJobState, now: int, report: TickReport) -> None:
        events = job_domain.decide_follow_up(state, now, self.settings.retry, self.settings.lost_after_ms,
                                             self.settings.start_timeout_ms)
        if self._append(state, events, "follow-up"):
            kind = type(events[0]).__name__
            (report.cancelled if kind == "TrainingCancelled" else report.requeued).append(state.job_id)
            if kind == "TrainingQueued":
                log.info("training job %s requeued (%s)", state.job_id, events[0].reason)
                launcher = self.launchers.get(state.executor)
                if launcher is not None and events[0].reason == "worker_lost":
                    launcher.stop(state)

    def _schedule(self, states: list[job_domain.TrainingJobState], now: int, report: TickReport) -> None:
        by_id = {s.job_id: s for s in states}
        queued = [scheduling.QueuedJob(job_id=s.job_id, tenant_id=s.tenant_id, pool=s.gpu_pool, gpus=s.gpus,
                                       priority=s.priority, enqueued_at_ms=s.created_at_ms,
                                       not_before_ms=s.not_before_ms)
                  for s in states if s.state == job_domain.QUEUED]
        if not queued:
            return
        running = [scheduling.RunningJob(job_id=s.job_id, tenant_id=s.tenant_id, pool=s.gpu_pool, gpus=s.gpus,
                                         priority=s.priority, started_at_ms=s.started_at_ms or s.last_seen_ms,
                                         stopping=bool(s.stop_reason))
                   for s in states if s.state in job_domain.HOLDS_GPUS]
        tenants = {s.tenant_id for s in states}
        quotas = {}
        for tenant in tenants:
            try:
                q = load_policy(self.settings.policies_dir, tenant).policy.quotas
                quotas[tenant] = scheduling.TenantQuota(max_concurrent_jobs=q.max_concurrent_jobs, weight=q.weight)
            except PrivtuneError as exc:
                log.error("tenant %s: its policy cannot be read (%s); its jobs wait", tenant, exc)
                quotas[tenant] = scheduling.TenantQuota(max_concurrent_jobs=0)
        snapshot = scheduling.Snapshot(now_ms=now, pools=self.settings.pools, queued=queued, running=running,
                                       quotas=quotas, default_quota=scheduling.TenantQuota(max_concurrent_jobs=1))
        for decision in scheduling.plan_schedule(snapshot):
            state = by_id[decision.job_id]
            if isinstance(decision, scheduling.Preempt):
                if self._append(state, job_domain.decide_preempt(state, decision.for_job_id), "preempt"):
                    report.preempted.append(state.job_id)
                    log.info("preempting %s for %s", state.job_id, decision.for_job_id)
                continue
            pool = self.settings.pools[decision.pool]
            try:
                events = job_domain.decide_schedule(state, decision.pool, decision.gpus, pool.executor,
                                                    pool.gpu_type, now)
            except PrivtuneError:
                continue
            if self._append(state, events, "schedule"):
                report.placed.append(state.job_id)
                launcher = self.launchers.get(pool.executor)
                if launcher is not None:
                    try:
                        launcher.launch(state, decision)
                    except Exception:  # noqa: BLE001 - the start timeout requeues an attempt that never started
                        log.exception("launching %s on %s failed", state.job_id, pool.name)
