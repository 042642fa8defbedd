"""Requests an evaluation when a model version is registered from a job that named a suite.

Group ``eval.trigger`` follows ``privtune.model.events``. A ``ModelVersionRegistered`` whose job
had an ``evaluation_suite_id`` ("default" or a suite id) becomes an ``EvalRequested`` with its
shard commands. The suite is resolved (for "default": built from the job's dataset version,
checked against the manifest hash curation recorded) before any transaction; only the appends
run inside one. The run's id is derived from the tenant, the version and the suite, so a
redelivered registration asks for the same run, once (the append is a compare-and-set). A
request that cannot be made (an unknown suite, a dataset folder gone, anything else that is not
an outage) is recorded as a failed run that says why, so ``GetEvalRun``/``ListEvalRuns`` show it
instead of nothing. Offsets are committed after the registrations of a batch are handled.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Subscription
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, MalformedEvent, PrivtuneError
from services.common.supervision import is_transient, run_loop
from services.common.topics import MODEL_EVENTS
from services.eval import domain
from services.eval.application import EvalApplication, auto_eval_id, generation_settings
from services.eval.catalog import facts_of

log = logging.getLogger(__name__)
GROUP = "eval.trigger"
DEFAULT_JUDGE = "metric:rouge_l"
ACTOR = "privtune/eval"


class AutoEvaluator:
    def __init__(self, engine: Engine, bus: EventBus, app: EvalApplication) -> None:
        self.engine = engine
        self.bus = bus
        self.app = app
        self.subscription: Subscription | None = None

    def run(self, stop: threading.Event) -> None:
        run_loop("eval trigger", self._step, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _rejoin(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the eval trigger's membership", exc_info=True)
        self.subscription = None

    def _step(self) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [MODEL_EVENTS])
        records = self.subscription.poll(max_records=50, timeout=0.5)
        for record in records:
            try:
                env = codec.decode(record.value)
            except MalformedEvent as exc:
                self.bus.publish([dead_letter_message(record, GROUP, exc)])
                continue
            if env.WhichOneof("payload") == "model_version_registered" and \
                    env.model_version_registered.evaluation_suite_id:
                self.request(env)
        if records:
            self.subscription.commit(records)
        return bool(records)

    def request(self, env: events_pb2.EventEnvelope) -> str:
        """Request the registration's evaluation (or record why it cannot run); returns the eval id."""
        e = env.model_version_registered
        model = facts_of(e)
        eval_id = auto_eval_id(env.tenant_id, e.model_version_id, e.evaluation_suite_id)
        with self.engine.connect() as conn:
            if eventstore.load_stream(conn, env.tenant_id, eval_id):
                return eval_id  # requested before (a redelivery): nothing to build
        try:
            suite = self.app.resolve_suite(env.tenant_id, model, e.evaluation_suite_id)
            with self.engine.begin() as conn:
                self.app.append_request(conn, env.tenant_id, ACTOR, eval_id, model, suite, model.gates,
                                        DEFAULT_JUDGE, generation_settings(events_pb2.GenerationSettings()),
                                        domain.DEFAULT_SHARD_SIZE, "training_completed", env.correlation_id)
        except Exception as exc:  # noqa: BLE001 - the registration is answered by a failed run, never lost
            if is_transient(exc):
                raise
            if isinstance(exc, PrivtuneError):
                code, reason = exc.reason.lower(), str(exc)[:1000]
            else:
                log.exception("model version %s: requesting its evaluation failed", e.model_version_id)
                code, reason = "internal", f"{type(exc).__name__} while requesting the evaluation; see the eval log"
            log.warning("model version %s: its evaluation cannot be requested: %s", e.model_version_id, reason)
            self._record_failure(env, eval_id, code, reason)
        return eval_id

    def _record_failure(self, env: events_pb2.EventEnvelope, eval_id: str, code: str, reason: str) -> None:
        e = env.model_version_registered
        causation = Causation(actor=ACTOR, correlation_id=env.correlation_id)
        events = [events_pb2.EvalRequested(eval_id=eval_id, job_id=e.job_id, model_version_id=e.model_version_id,
                                           suite_id=e.evaluation_suite_id, trigger="training_completed"),
                  events_pb2.EvalFailed(eval_id=eval_id, model_version_id=e.model_version_id, error_code=code,
                                        reason=reason)]
        try:
            with self.engine.begin() as conn:
                eventstore.append(conn, domain.RUN_STREAM, [new_envelope(
                    p, subject=eval_id, tenant_id=env.tenant_id, source=ACTOR, causation=causation)
                    for p in events], expected_version=0)
        except ConcurrencyConflict:
            pass  # the run exists already
