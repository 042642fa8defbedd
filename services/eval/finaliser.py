"""Completes a run once every shard has its outcome: scores, intervals, gates, report, EvalCompleted.

Group ``eval.finaliser`` follows ``privtune.eval.events``. On each recorded shard outcome it
loads the run and its shards; when all are computed it reads their outputs from the tenant's
storage (each checked against the sha256 its report recorded), summarises them (paired bootstrap
intervals, judge win rate, probes, gates: services/eval/results.py), writes ``results.json`` and
``report.html`` beside the shards, and appends ``EvalCompleted`` to the run's stream as a
compare-and-set on its version. A shard that failed fails the run (``EvalFailed``).

The work happens outside any transaction (it reads every output); the offset is committed after
it. A crash in between redelivers the event and the finaliser finds the run finished, or does
the same deterministic work again (the bootstrap is seeded by the eval id): the run completes
exactly once with the same scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading

from sqlalchemy import Engine, func, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Subscription
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, MalformedEvent
from services.common.eval_gates import gates_dict
from services.common.storage import open_tenant_storage
from services.common.store.schema import stored_events
from services.common.supervision import is_transient, run_loop
from services.common.topics import EVAL_EVENTS
from services.eval import domain
from services.eval.report import render_html
from services.eval.results import flat_metrics, summarise
from services.eval.suites import SuiteError, load_items

log = logging.getLogger(__name__)
GROUP = "eval.finaliser"
SHARD_COMPLETED, SHARD_FAILED = "privtune.v1.EvalShardCompleted", "privtune.v1.EvalShardFailed"
SOURCE = "privtune/eval"


class OutputsMismatch(Exception):
    """A shard's stored outputs are not what its worker reported."""


def run_seed(eval_id: str) -> int:
    return int(hashlib.sha256(eval_id.encode()).hexdigest()[:8], 16)


class Finaliser:
    def __init__(self, engine: Engine, bus: EventBus, storage_root: str) -> None:
        self.engine = engine
        self.bus = bus
        self.storage_root = storage_root
        self.subscription: Subscription | None = None

    def run(self, stop: threading.Event) -> None:
        run_loop("eval finaliser", self._step, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _rejoin(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the eval finaliser's membership", exc_info=True)
        self.subscription = None

    def _step(self) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [EVAL_EVENTS])
        records = self.subscription.poll(max_records=100, timeout=0.5)
        runs: dict[tuple[str, str], None] = {}
        for record in records:
            try:
                env = codec.decode(record.value)
            except MalformedEvent as exc:
                self.bus.publish([dead_letter_message(record, GROUP, exc)])
                continue
            kind = env.WhichOneof("payload")
            if kind in domain.SHARD_OUTCOMES:
                runs[(env.tenant_id, getattr(env, kind).eval_id)] = None
        for tenant_id, eval_id in runs:  # a batch of outcomes of one run is finalised once
            self.finalise(tenant_id, eval_id)
        if records:
            self.subscription.commit(records)
        return bool(records)

    def finalise(self, tenant_id: str, eval_id: str) -> str:
        """Complete or fail the run if its shards allow; returns what was decided."""
        with self.engine.connect() as conn:
            run = domain.fold_run(eventstore.load_stream(conn, tenant_id, eval_id))
            if not run.exists or run.finished:
                return "done"
            low, high = domain.shard_range(eval_id)
            outcomes = dict(conn.execute(  # one range count per report, not every shard's stream each time
                select(stored_events.c.event_type, func.count()).where(
                    stored_events.c.tenant_id == tenant_id, stored_events.c.stream_id >= low,
                    stored_events.c.stream_id < high,
                    stored_events.c.event_type.in_((SHARD_COMPLETED, SHARD_FAILED)))
                .group_by(stored_events.c.event_type)).all())
            if not outcomes.get(SHARD_FAILED) and outcomes.get(SHARD_COMPLETED, 0) < run.request.shard_count:
                return "wait"
            shards = [domain.fold_shard(eventstore.load_stream(conn, tenant_id, domain.shard_stream(eval_id, i)))
                      for i in range(run.request.shard_count)]
        decision = domain.decide_finish(run, shards)
        payload: events_pb2.EvalCompleted | events_pb2.EvalFailed
        if decision == "fail":
            failed = next(s.failed for s in shards if s.failed is not None)
            payload = events_pb2.EvalFailed(eval_id=eval_id, model_version_id=run.request.model_version_id,
                                            error_code=failed.error_code, shard=failed.shard,
                                            reason=f"shard {failed.shard} failed: {failed.reason}")
        elif decision == "complete":
            try:
                payload = self._complete(tenant_id, run, shards)
            except OutputsMismatch as exc:
                payload = events_pb2.EvalFailed(eval_id=eval_id, model_version_id=run.request.model_version_id,
                                                error_code="outputs_mismatch", reason=str(exc))
            except Exception as exc:  # noqa: BLE001 - one broken run must never hold back every other run
                if is_transient(exc):
                    raise
                log.exception("evaluation %s: its outputs cannot be summarised", eval_id)
                payload = events_pb2.EvalFailed(
                    eval_id=eval_id, model_version_id=run.request.model_version_id, error_code="invalid_outputs",
                    reason=f"the shard outputs could not be read or summarised ({type(exc).__name__}); the eval "
                           "service log has the details")
        else:
            return decision
        env = new_envelope(payload, subject=eval_id, tenant_id=tenant_id, source=SOURCE,
                           causation=Causation(actor=SOURCE, correlation_id=eval_id))
        try:
            with self.engine.begin() as conn:
                eventstore.append(conn, domain.RUN_STREAM, [env], expected_version=run.version)
        except ConcurrencyConflict:
            log.info("evaluation %s: another finaliser recorded its outcome first", eval_id)
            return "done"
        log.info("evaluation %s: %s", eval_id, decision)
        return decision

    def _complete(self, tenant_id: str, run: domain.EvalRunState,
                  shards: list[domain.ShardState]) -> events_pb2.EvalCompleted:
        r = run.request
        storage = open_tenant_storage(self.storage_root, tenant_id)
        records: list[dict] = []
        for shard in shards:
            assert shard.completed is not None
            with storage.open(storage.key_for(shard.completed.outputs_uri)) as fh:
                body = fh.read()
            if hashlib.sha256(body).hexdigest() != shard.completed.outputs_sha256:
                raise OutputsMismatch(f"the stored outputs of shard {shard.completed.shard} do not match the sha256 "
                                      "its worker reported; they were changed after it wrote them")
            records.extend(json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip())
        try:  # the prompts and references of the report's examples (the outputs hold only answers)
            items = load_items(storage, storage.key_for(r.suite_uri).rstrip("/"), r.suite_manifest_sha256, 0,
                               r.item_count)
        except SuiteError as exc:
            raise OutputsMismatch(f"the suite's files no longer match their sha256 ({exc})") from None
        if [rec.get("id") for rec in records] != [item["id"] for item in items]:
            raise OutputsMismatch("the shards' outputs are not one record per suite item in order: a shard reported "
                                  "outputs of other items")
        results = summarise(records, eval_id=run.eval_id, suite_id=r.suite_id, model_version_id=r.model_version_id,
                            base_model_id=r.base_model_id, judge=r.judge, shards=len(shards),
                            gates=gates_dict(r.gates), seed=run_seed(run.eval_id),
                            items={item["id"]: item for item in items})
        prefix = domain.run_prefix(run.eval_id)
        results_body = json.dumps(results, sort_keys=True, ensure_ascii=False, indent=1).encode("utf-8")
        storage.write(f"{prefix}/results.json", results_body)
        storage.write(f"{prefix}/report.html", render_html(results).encode("utf-8"))
        estimates = [events_pb2.MetricEstimate(
            name=e["name"], candidate=e["candidate"], reference=e["reference"], delta=e["delta"],
            ci_low=e["ci_low"], ci_high=e["ci_high"], n=e["n"], higher_is_better=e["higher_is_better"],
            candidate_ci_low=e.get("candidate_ci_low", e["candidate"]),
            candidate_ci_high=e.get("candidate_ci_high", e["candidate"]))
            for e in results["estimates"]]
        gates = [events_pb2.GateResult(gate=g["gate"], passed=g["passed"], threshold=g["threshold"],
                                       bound=g["bound"] if g["bound"] is not None else 0.0, bound_kind=g["bound_kind"],
                                       margin=g["margin"] if g["margin"] is not None else 0.0, reason=g["reason"])
                 for g in results["gates"]]
        return events_pb2.EvalCompleted(
            eval_id=run.eval_id, model_version_id=r.model_version_id, suite_id=r.suite_id,
            metrics=flat_metrics(results), passed=results["passed"], report_uri=storage.uri_for(f"{prefix}/report.html"),
            estimates=estimates, gates=gates, reason=results["reason"], job_id=r.job_id, items=len(records),
            shards=len(shards), results_uri=storage.uri_for(f"{prefix}/results.json"),
            results_sha256=hashlib.sha256(results_body).hexdigest(), confidence=results.get("confidence", 0.95))
