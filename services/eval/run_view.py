"""Read model of evaluation runs, as ListEvalRuns serves it. Rebuilt by `privtune replay`."""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from privtune.v1 import events_pb2
from services.common.store.schema import eval_run_view as view
from services.common.projection import Projection
from services.common.topics import EVAL_EVENTS
from services.eval.domain import FAILED, RUNNING, SUCCEEDED


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    if kind == "eval_requested":
        e = env.eval_requested
        conn.execute(insert(view).values(
            tenant_id=env.tenant_id, eval_id=e.eval_id, model_version_id=e.model_version_id, suite_id=e.suite_id,
            job_id=e.job_id, state=RUNNING, shards_total=e.shard_count, shards_done=0, passed=0, reason="",
            report_uri="", created_at_ms=at, updated_at_ms=at, judge=e.judge, trigger=e.trigger,
            item_count=e.item_count, error_code=""))
        return
    key = (view.c.tenant_id == env.tenant_id,)
    if kind == "eval_shard_completed":
        conn.execute(update(view).where(*key, view.c.eval_id == env.eval_shard_completed.eval_id)
                     .values(shards_done=view.c.shards_done + 1, updated_at_ms=at))
    elif kind == "eval_completed":
        e = env.eval_completed
        conn.execute(update(view).where(*key, view.c.eval_id == e.eval_id).values(
            state=SUCCEEDED, passed=int(e.passed), reason=e.reason, report_uri=e.report_uri, updated_at_ms=at))
    elif kind == "eval_failed":
        e = env.eval_failed
        conn.execute(update(view).where(*key, view.c.eval_id == e.eval_id).values(
            state=FAILED, reason=e.reason, error_code=e.error_code, updated_at_ms=at))


PROJECTION = Projection(name="eval.run_view", topics=(EVAL_EVENTS,), tables=(view,), apply=apply)
