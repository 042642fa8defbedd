"""ListEvalRuns' read model: each row is the run as GetEvalRun has it, less metrics, estimates and gates,
whether the projection kept it live or `privtune replay` rebuilt it from the event store.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine

from privtune.v1 import eval_service_pb2 as epb
from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.replay import replay, snapshot
from services.common.store import open_store
from services.common.store.schema import eval_run_view
from services.eval import domain, run_view
from services.eval.grpc_api import run_from_row, run_message

pytestmark = pytest.mark.integration
TENANT = "acme"
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)


def _env(payload: object, subject: str, version: int, minute: int) -> events_pb2.EventEnvelope:
    return new_envelope(payload, subject=subject, tenant_id=TENANT, source="privtune/eval",  # type: ignore[arg-type]
                        causation=Causation(actor="alice", correlation_id="c"), aggregate_version=version,
                        time=T0 + timedelta(minutes=minute))


def _record(live: Engine, eval_id: str, request: events_pb2.EvalRequested, shards_done: int,
            outcome: events_pb2.EvalCompleted | events_pb2.EvalFailed, start: int) -> list[events_pb2.EventEnvelope]:
    """The run's events appended to the event store and applied to the view, as the platform does;
    returns the run stream (what GetEvalRun folds)."""
    requested = _env(request, eval_id, 1, start)
    shards = [_env(events_pb2.EvalShardCompleted(eval_id=eval_id, shard=i, items=4, worker_id="w"),
                   domain.shard_stream(eval_id, i), 1, start + 1 + i) for i in range(shards_done)]
    finished = _env(outcome, eval_id, 2, start + 1 + shards_done)
    with live.begin() as conn:
        eventstore.append(conn, domain.RUN_STREAM, [requested], expected_version=0)
        for env in shards:
            eventstore.append(conn, domain.SHARD_STREAM, [env], expected_version=0)
        eventstore.append(conn, domain.RUN_STREAM, [finished], expected_version=1)
    with live.begin() as conn:
        for env in [requested, *shards, finished]:
            run_view.apply(conn, env)
    return [requested, finished]


def _listed(engine: Engine) -> dict[str, epb.EvalRun]:
    rows, _ = queries.page(engine, eval_run_view, ("created_at_ms", "eval_id"), TENANT, 50, "")
    return {r["eval_id"]: run_from_row(r) for r in rows}


def _as_got(events: list[events_pb2.EventEnvelope], shards_done: int) -> epb.EvalRun:
    """GetEvalRun's answer for the run, less what a list row does not carry."""
    run = run_message(domain.fold_run(events), shards_done)
    for name in ("metrics", "estimates", "gates"):
        run.ClearField(name)
    return run


def test_list_rows_carry_trigger_judge_items_and_error_code_as_get_does_live_and_replayed(tmp_path: Path) -> None:
    live = open_store(f"sqlite:///{tmp_path}/live.db")
    auto = _record(live, "ev-auto", events_pb2.EvalRequested(
        eval_id="ev-auto", job_id="job-1", model_version_id="bot/v1", suite_id="suite-1", item_count=8,
        shard_count=2, judge="metric:rouge_l", trigger="training_completed"), 2, events_pb2.EvalCompleted(
        eval_id="ev-auto", model_version_id="bot/v1", passed=True, reason="all gates passed",
        report_uri="eval/runs/ev-auto/report.html", metrics={"win_rate": 0.7}), start=0)
    demand = _record(live, "ev-demand", events_pb2.EvalRequested(
        eval_id="ev-demand", model_version_id="bot/v2", suite_id="suite-1", item_count=12, shard_count=3,
        judge="model:judge-1", trigger="on_demand"), 1, events_pb2.EvalFailed(
        eval_id="ev-demand", model_version_id="bot/v2", error_code="invalid_outputs", shard=1,
        reason="the shard outputs could not be read or summarised"), start=10)

    listed = _listed(live)
    assert list(listed) == ["ev-auto", "ev-demand"]
    assert listed["ev-auto"] == _as_got(auto, 2) and listed["ev-demand"] == _as_got(demand, 1)
    failed, succeeded = listed["ev-demand"], listed["ev-auto"]
    assert failed.state == epb.EVAL_RUN_STATE_FAILED and failed.error_code == "invalid_outputs"
    assert failed.trigger == "on_demand" and failed.judge == "model:judge-1" and failed.item_count == 12
    assert succeeded.trigger == "training_completed" and succeeded.error_code == "" and succeeded.passed

    # replay into a scratch store, then in place: the same rows, new columns included
    scratch = open_store(f"sqlite:///{tmp_path}/scratch.db")
    applied = {r.projection: r.applied for r in replay(scratch, [run_view.PROJECTION], source=live)}
    assert applied == {"eval.run_view": 7}  # 2 requested, 3 shards, 2 outcomes
    assert snapshot(scratch, [run_view.PROJECTION]) == snapshot(live, [run_view.PROJECTION])
    assert _listed(scratch) == listed
    replay(live, [run_view.PROJECTION])
    assert _listed(live) == listed
