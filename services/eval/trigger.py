"""Requests an evaluation when a model version is registered from a job that named a suite.

Consumer group ``eval.trigger`` on ``privtune.model.events``: a ``ModelVersionRegistered`` whose
job had an ``evaluation_suite_id`` ("default" or a suite id) becomes an ``EvalRequested`` (with
its shard commands) in the consumer's transaction. The run's id is derived from the tenant,
the version and the suite, so a redelivered registration asks for the same run, once. A request
that cannot be made (an unknown suite, a dataset folder gone) is recorded as a failed run that
says why, so ``GetEvalRun``/``ListEvalRuns`` show it instead of nothing.
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, PrivtuneError
from services.common.supervision import is_transient
from services.common.topics import MODEL_EVENTS
from services.eval import domain
from services.eval.application import EvalApplication, auto_eval_id, generation_settings
from services.eval.catalog import facts_of

log = logging.getLogger(__name__)
GROUP = "eval.trigger"
DEFAULT_JUDGE = "metric:rouge_l"


def handler(app: EvalApplication):  # type: ignore[no-untyped-def]
    def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
        if env.WhichOneof("payload") != "model_version_registered":
            return
        e = env.model_version_registered
        if not e.evaluation_suite_id:
            return
        model = facts_of(e)
        eval_id = auto_eval_id(env.tenant_id, e.model_version_id, e.evaluation_suite_id)
        try:
            with conn.begin_nested():
                app.append_request(conn, env.tenant_id, "privtune/eval", eval_id, model, e.evaluation_suite_id,
                                   model.gates, DEFAULT_JUDGE, generation_settings(events_pb2.GenerationSettings()),
                                   domain.DEFAULT_SHARD_SIZE, "training_completed", env.correlation_id)
        except PrivtuneError as exc:
            if is_transient(exc):
                raise
            log.warning("model version %s: its evaluation cannot be requested: %s", e.model_version_id, exc)
            causation = Causation(actor="privtune/eval", correlation_id=env.correlation_id)
            events = [events_pb2.EvalRequested(eval_id=eval_id, job_id=e.job_id, model_version_id=e.model_version_id,
                                               suite_id=e.evaluation_suite_id, trigger="training_completed"),
                      events_pb2.EvalFailed(eval_id=eval_id, model_version_id=e.model_version_id,
                                            error_code=exc.reason.lower(), reason=str(exc)[:1000])]
            try:
                with conn.begin_nested():
                    eventstore.append(conn, domain.RUN_STREAM, [new_envelope(
                        p, subject=eval_id, tenant_id=env.tenant_id, source="privtune/eval", causation=causation)
                        for p in events], expected_version=0)
            except ConcurrencyConflict:
                pass  # the run exists already
    return apply


TOPICS = (MODEL_EVENTS,)
