"""Training-job application service: admit -> decide -> append (+ outbox). Nothing else.

Create records ``TrainingRequested`` followed by ``TrainingRejected`` (every broken rule
named) or ``TrainingQueued``; a DP job's epsilon is reserved on the tenant's ledger in the
same transaction, so two concurrent jobs can never together pass the monthly cap.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

from sqlalchemy import Connection, Engine, select, tuple_
from sqlalchemy.exc import IntegrityError

from privtune.v1 import events_pb2
from privtune.v1 import training_service_pb2 as api
from services.common import eventstore, positions, queries, random_ids
from services.common.clock import now_ms
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, FailedPrecondition, InvalidArgument, NotFound, Resource
from services.common.idempotency import RequestIdTaken, claim_request_id, claim_row, created_by_request
from services.common.identity import Caller
from services.common.group_commit import GroupCommit
from services.common.store.direct import insert_rows, pipelined
from services.common.store.one_statement import autocommit, duplicate_in, one_statement
from services.common.store.schema import stored_events, training_job_view, unique_names
from services.common.store.engine import reader
from services.orchestrator import admission, job_domain, job_store, ledger
from services.orchestrator.admission import METHOD_ENUM, REQUEST_KIND
from services.orchestrator.job_store import SOURCE
from services.orchestrator.settings import OrchestratorSettings

LEDGER_STREAM_TYPE = "privacy_ledger"
# Creates written in one transaction at most (the gRPC server runs 32 unary threads); 1: each on its own.
# Batched by default on SQLite only: there every writer queues for the one write lock anyway; on PostgreSQL
# creates commit side by side, and a batch made them wait for each other (handler p50 88 ms vs 58 ms
# unbatched, docs/benchmarks.md). OrchestratorSettings.create_batch (PRIVTUNE_CREATE_BATCH) sets it for both.
CREATE_BATCH = {"sqlite": 32}
log = logging.getLogger(__name__)
_LEDGER_STATES = {ledger.RESERVED: api.PRIVACY_LEDGER_ENTRY_STATE_RESERVED,
                  ledger.SETTLED: api.PRIVACY_LEDGER_ENTRY_STATE_SETTLED}


def append_events(conn: Connection, tenant_id: str, stream_id: str, stream_type: str, payloads: list,
                  causation: Causation, expected_version: int) -> list[events_pb2.EventEnvelope]:
    """Wrap ``payloads`` as the stream's next events and append them (+ outbox) in ``conn``'s transaction."""
    envelopes = [new_envelope(p, subject=stream_id, tenant_id=tenant_id, source=SOURCE, causation=causation)
                 for p in payloads]
    eventstore.append(conn, stream_type, envelopes, expected_version=expected_version)
    return envelopes


@dataclass(frozen=True)
class NewJob:
    """A create on its way into a batch (``TrainingJobApplication._write_new_jobs``)."""

    tenant_id: str
    request_id: str  # "" when the caller sent none
    job_id: str
    payloads: list
    causation: Causation


ALONE = object()  # the outcome of a create whose batch was not written: create it on its own


def _claimed_already(conn: Connection, jobs: Sequence[NewJob]) -> set[str]:
    """The job ids of ``jobs`` whose request id is claimed: in the store already (a call with it committed
    since this one looked), or by an earlier job of the batch (a client's retry beside its first try). Those
    are created on their own (they answer with the job that holds the id) and the rest of the batch is
    written, instead of one duplicate failing the whole batch's insert."""
    asked = sorted({(j.tenant_id, j.request_id) for j in jobs if j.request_id})
    if not asked:
        return set()
    u = unique_names.c
    held = {(t, n) for t, n in conn.execute(select(u.tenant_id, u.name).where(
        u.kind == REQUEST_KIND, tuple_(u.tenant_id, u.name).in_(asked)))}
    alone = set()
    for j in jobs:
        key = (j.tenant_id, j.request_id)
        if j.request_id and key in held:
            alone.add(j.job_id)
        elif j.request_id:
            held.add(key)
    return alone


class TrainingJobApplication:
    """Training jobs of the caller's tenant: create, estimate, get, list, cancel, watch; the privacy ledger."""

    def __init__(self, engine: Engine, settings: OrchestratorSettings) -> None:
        self.engine = engine
        self.settings = settings
        batch = settings.create_batch or CREATE_BATCH.get(engine.dialect.name, 1)
        # SQLite: the next batch's leader waits for the write lock while the batch in front holds it (its write
        # takes the batch once it has the lock); PostgreSQL has no such lock: there batches go one at a time
        self.new_jobs: GroupCommit[NewJob, object] = GroupCommit(
            self._write_new_jobs, max_batch=max(1, batch), lead_early=engine.dialect.name == "sqlite")

    # ------------------------------------------------------------------ commands

    def create(self, caller: Caller, req: api.CreateTrainingJobRequest,
               correlation_id: str = "") -> tuple[job_domain.TrainingJobState, str]:
        """The new job (or the one ``request_id`` already made) and its sealed position (see positions.py).

        A job that reserves no privacy budget is written in a batch with the creates that arrive meanwhile
        (``_write_new_jobs``, SQLite by default); one that does, or one whose batch could not be written, on
        its own: on PostgreSQL, without a reservation, as one statement that is its own transaction
        (``_write_at_once``), else in a transaction.
        """
        job_id = f"tj-{random_ids.uuid4().hex[:24]}"
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or random_ids.uuid4().hex)
        batched = False
        for _ in range(10):
            try:  # with the request id: admission's read also tells the job it made already (no read of its own)
                decided = admission.admit(self.engine, self.settings, caller.tenant_id, job_id, req.spec, now_ms(),
                                          request_id=req.request_id)
            except Exception as refused:  # not admissible (now), for whatever reason: still a retry if the id
                existing = self._by_request_id(caller, req.request_id) if req.request_id else None  # made a job
                if existing is None:
                    raise
                log.info("a retry of training job %s's create was answered although admission now refuses it "
                         "(%s)", existing.job_id, type(refused).__name__)
                return existing, self.position_of(caller, existing.job_id)
            if req.request_id and decided.created_by:
                return self.get(caller, decided.created_by), self.position_of(caller, decided.created_by)
            events = job_domain.decide_create(decided.request, [v.to_proto() for v in decided.violations],
                                              decided.queued_event(), decided.policy.version,
                                              decided.policy.sha256)
            reserves = decided.admitted and decided.privacy is not None and decided.ledger_state is not None
            if not reserves and not batched and self.new_jobs.max_batch > 1:
                batched = True
                outcome = self.new_jobs.submit(NewJob(caller.tenant_id, req.request_id, job_id, events, causation))
                if outcome is not ALONE:
                    return outcome  # type: ignore[return-value]
            try:
                at_once = autocommit(self.engine)
                if at_once is not None and not reserves:  # PostgreSQL: the whole write is one statement
                    created, position = self._write_at_once(at_once, caller, req.request_id, job_id, events,
                                                            causation)
                    return created, positions.seal(self.engine, caller.tenant_id, position)
                with self.engine.begin() as conn:
                    if req.request_id:
                        self._claim_request(conn, caller, req.request_id, job_id)
                    try:
                        with pipelined(conn):  # PostgreSQL: the inserts and the position read in one round trip
                            created = job_store.append_job(conn, caller.tenant_id, job_id,
                                                           job_domain.TrainingJobState(), events, causation)
                            ledger_state, month = decided.ledger_state, decided.month
                            if reserves and decided.privacy is not None and ledger_state is not None:
                                cap = decided.policy.policy.privacy.monthly_epsilon_cap
                                reserve = ledger.decide_reserve(ledger_state, job_id, decided.privacy.epsilon,
                                                                decided.privacy.delta, cap, month)
                                append_events(conn, caller.tenant_id,
                                              ledger.ledger_stream_id(caller.tenant_id, month),
                                              LEDGER_STREAM_TYPE, reserve, causation, ledger_state.version)
                            position = eventstore.stream_position(conn, caller.tenant_id, job_id)
                    except IntegrityError as exc:  # pipelined: a version conflict surfaces at the read, not the insert
                        raise ConcurrencyConflict("the job's or the ledger's stream changed while this job was "
                                                  "admitted; retry") from exc
                return created, positions.seal(self.engine, caller.tenant_id, position)
            except ConcurrencyConflict:
                if self._exists(job_id):  # an earlier commit of this very create landed though it reported a
                    return self.get(caller, job_id), self.position_of(caller, job_id)  # failure: the job is made
                continue  # another job reserved budget first: judge this one again against the new total
            except RequestIdTaken:
                existing = self._by_request_id(caller, req.request_id)  # a concurrent call with this id won
                if existing is not None:
                    return existing, self.position_of(caller, existing.job_id)
                continue
        raise ConcurrencyConflict("this job was not written after 10 tries: concurrent writes kept moving the "
                                  "month's privacy ledger or held its request id; retry")

    def _write_at_once(self, engine: Engine, caller: Caller, request_id: str, job_id: str, events: list,
                       causation: Causation) -> tuple[job_domain.TrainingJobState, int]:
        """Store a new job (its request id's claim, its events, their outbox rows, its view row) as one statement
        that is its own transaction (``store.one_statement``): one round trip, its commit included. Returns the
        job and its position.

        Raises:
            RequestIdTaken: a committed call holds ``request_id`` already (nothing of this job is stored).
            ConcurrencyConflict: the job's stream has events already (nothing of this job is stored).
        """
        with engine.connect() as conn:
            try:
                with one_statement(conn) as written:
                    if request_id:
                        insert_rows(conn, unique_names, [claim_row(caller.tenant_id, REQUEST_KIND, request_id,
                                                                   job_id)])
                    created = job_store.append_job(conn, caller.tenant_id, job_id, job_domain.TrainingJobState(),
                                                   events, causation)
            except IntegrityError as exc:
                duplicated = duplicate_in(exc)
                if request_id and duplicated == unique_names.name:
                    raise RequestIdTaken(request_id) from None
                if duplicated == stored_events.name:
                    raise ConcurrencyConflict(f"training job {job_id} has events already") from exc
                raise  # not a duplicate key: a bug to see, not a race to retry
        position = written.max_key(stored_events)
        if position is None:  # not expected: the events went out in the statement, which answers their keys
            raise RuntimeError("the job's write did not answer its position")
        return created, position

    def _exists(self, job_id: str) -> bool:
        """Whether the job's stream has events (its id is this create's own, random: nobody else writes it)."""
        with reader(self.engine).connect() as conn:
            return eventstore.stream_version(conn, job_id) > 0

    def _write_new_jobs(self, take: Callable[[], list[NewJob]]) -> list[object]:
        """Write the jobs ``take()`` gives once this has the store's write lock (admitted or rejected, none
        reserving privacy budget) in one transaction: their request ids, events, outbox rows and view rows in
        a few multi-row statements, and their positions (told by SQLite as it stores the events, read elsewhere).

        All or nothing: if anything of the batch fails (a request id taken, a job id in use, the store), nothing
        of it is written and every job gets ``ALONE``, to be created on its own path, which reports its own
        outcome. So batching changes what a create costs, never what it answers.
        """
        jobs: list[NewJob] = []
        try:
            positions.prepare(self.engine)  # sealing inside the transaction below then writes nothing
            with self.engine.begin() as conn:  # on SQLite: the write lock (BEGIN IMMEDIATE) first, then the batch
                jobs = take()
                alone = _claimed_already(conn, jobs)
                written = [j for j in jobs if j.job_id not in alone]
                insert_rows(conn, unique_names, sorted(  # in key order: two batches claiming alike never deadlock
                    (claim_row(j.tenant_id, REQUEST_KIND, j.request_id, j.job_id) for j in written if j.request_id),
                    key=lambda row: (row["tenant_id"], row["name"])))
                states, found = job_store.append_new_jobs(
                    conn, [(j.tenant_id, j.job_id, j.payloads, j.causation) for j in written])
                if found is None:  # the store did not tell the events' seq (PostgreSQL): read them
                    found = eventstore.stream_positions(conn, [j.job_id for j in written])
                # sealed before the commit: a failure here writes nothing, instead of failing committed creates
                made = {j.job_id: (state, positions.seal(self.engine, j.tenant_id, found.get(j.job_id, 0)))
                        for j, state in zip(written, states)}
        except Exception as error:  # noqa: BLE001 - each job is tried again on its own, which reports its own error
            jobs = jobs or take()
            log.info("a batch of %d training-job creates was not written (%s: %s); each is created on its own",
                     len(jobs), type(error).__name__, str(error).split("\n", 1)[0][:200])
            return [ALONE] * len(jobs)
        return [made.get(j.job_id, ALONE) for j in jobs]

    def _claim_request(self, conn: Connection, caller: Caller, request_id: str, job_id: str) -> None:
        claim_request_id(conn, caller.tenant_id, REQUEST_KIND, request_id, job_id)

    def _by_request_id(self, caller: Caller, request_id: str) -> job_domain.TrainingJobState | None:
        job_id = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
        return self.get(caller, job_id) if job_id else None

    def cancel(self, caller: Caller, job_id: str, reason: str,
               correlation_id: str = "") -> tuple[job_domain.TrainingJobState, str]:
        """The job after the cancel, and its sealed position."""
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or random_ids.uuid4().hex)
        for _ in range(20):
            state = self.get(caller, job_id)
            events = job_domain.decide_cancel(state, reason)
            try:
                with self.engine.begin() as conn:
                    state = job_store.append_job(conn, caller.tenant_id, job_id, state, events, causation)
                    position = eventstore.stream_position(conn, caller.tenant_id, job_id)
                return state, positions.seal(self.engine, caller.tenant_id, position)
            except ConcurrencyConflict:
                continue  # the worker reported progress meanwhile
        raise ConcurrencyConflict(f"training job {job_id} kept changing; retry the cancel")

    def claim_attempt(self, caller: Caller, job_id: str, attempt: int, worker_id: str, claim_id: str,
                      executor: str = "") -> tuple[job_domain.ClaimDecision, job_domain.TrainingJobState]:
        """The compare-and-set a worker must win before it runs ``attempt`` (see job_domain.decide_claim)."""
        if not job_id or attempt <= 0 or not worker_id or not claim_id:
            raise InvalidArgument("job_id, attempt (>= 1), worker_id and claim_id are required to claim an attempt")
        if len(worker_id) > 128 or len(claim_id) > 64:
            raise InvalidArgument("worker_id is longer than 128 characters or claim_id longer than 64")
        for _ in range(20):
            state = self.get(caller, job_id)
            decision = job_domain.decide_claim(state, attempt, worker_id, claim_id, executor)
            if not decision.events:
                return decision, state
            # caused by the command it claims; part of the job's chain of requests
            causation = Causation(actor=worker_id, correlation_id=state.correlation_id or random_ids.uuid4().hex,
                                  causation_id=state.scheduled_event_id)
            try:
                with self.engine.begin() as conn:
                    state = job_store.append_job(conn, caller.tenant_id, job_id, state, decision.events, causation)
                return decision, state
            except ConcurrencyConflict:
                continue  # another worker's claim or a report landed first: decide again on the new state
        raise ConcurrencyConflict(f"training job {job_id} kept changing while attempt {attempt} was claimed; retry")

    def estimate(self, caller: Caller, spec: api.TrainingJobSpec) -> api.EstimateTrainingJobResponse:
        decided = admission.admit(self.engine, self.settings, caller.tenant_id, "estimate", spec, now_ms())
        return api.EstimateTrainingJobResponse(
            estimate=decided.estimate_proto(), violations=[v.to_proto() for v in decided.violations],
            method=METHOD_ENUM[decided.spec.method], policy_version=decided.policy.version,
            fitting_methods=[METHOD_ENUM[m] for m in decided.fitting])

    # ------------------------------------------------------------------ queries

    def get(self, caller: Caller, job_id: str) -> job_domain.TrainingJobState:
        if not job_id:
            raise InvalidArgument("job_id is required", field="job_id")
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, job_id)
        if not events:
            raise NotFound(f"training job {job_id!r} not found in tenant {caller.tenant_id!r}",
                           reason="TRAINING_JOB_NOT_FOUND", resource=Resource("privtune.v1.TrainingJob", job_id))
        return job_domain.fold(events)

    def list(self, caller: Caller, page_size: int = 50, page_token: str = "", state: int = 0,
             min_position: str = "") -> tuple[list[dict], str, str]:
        """A page of the tenant's jobs, its next page token and the (sealed) position it reflects.

        The view is written in the same transaction as the jobs' events (job_view.py), so it is
        never behind the event store: its position is the tenant's newest one, read in the same
        statement as the rows (one snapshot), and a ``min_position`` this tenant was given is
        always passed already: read your writes never waits here. One it was not given is refused.
        """
        wanted = positions.unseal(self.engine, caller.tenant_id, min_position)
        with reader(self.engine).connect() as conn:
            rows, token, position = queries.positioned_page(
                self.engine, training_job_view, ("created_at_ms", "job_id"), caller.tenant_id, page_size, page_token,
                equal={"state": state} if state else {}, filters={"state": state}, conn=conn)
        if wanted > position:  # sealed by this store for this tenant, yet ahead of it: the store was restored
            raise FailedPrecondition("min_position is ahead of this store's events (was the store restored "
                                     "from an older backup?); list without it", reason="POSITION_AHEAD",
                                     field="min_position")
        return rows, token, positions.seal(self.engine, caller.tenant_id, position)

    def position_of(self, caller: Caller, job_id: str) -> str:
        """The sealed position of the job's newest event: a list given it shows the job at least this new."""
        with reader(self.engine).connect() as conn:
            return positions.seal(self.engine, caller.tenant_id,
                                  eventstore.stream_position(conn, caller.tenant_id, job_id))

    def watch(self, caller: Caller, job_id: str, is_active: Callable[[], bool], stop: threading.Event,
              poll_interval: float = 0.2) -> Iterator[events_pb2.EventEnvelope]:
        """The job's events from the first; ends once nothing more will happen to it."""
        self.get(caller, job_id)
        retry = self.settings.retry
        state = [job_domain.TrainingJobState()]

        def final(env: events_pb2.EventEnvelope) -> bool:
            state[0] = job_domain.evolve(state[0], env)
            return state[0].is_final(retry)

        return queries.watch_stream(self.engine, caller.tenant_id, job_id, is_active, stop, poll_interval,
                                    final=final)

    def privacy_ledger(self, caller: Caller, month: str = "") -> api.PrivacyLedger:
        month = month or ledger.month_of(now_ms())
        if len(month) != 7 or month[4] != "-" or not (month[:4] + month[5:]).isdigit():
            raise InvalidArgument(f"month {month!r} must look like 2026-11", field="month")
        from services.orchestrator.policy_files import load_policy

        cap = load_policy(self.settings.policies_dir, caller.tenant_id).policy.privacy.monthly_epsilon_cap
        state = admission.load_ledger(self.engine, caller.tenant_id, month)
        entries = [api.PrivacyLedgerEntry(job_id=job, epsilon_reserved=e.reserved, epsilon_spent=e.spent,
                                          state=_LEDGER_STATES[e.state]) for job, e in sorted(state.entries.items())]
        return api.PrivacyLedger(month=month, monthly_cap=cap, epsilon_committed=state.committed,
                                 epsilon_remaining=max(0.0, cap - state.committed), entries=entries)
