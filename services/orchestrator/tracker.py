"""Experiment tracker: every training job is a run with parameters, learning curves and provenance.

``get_run`` and ``compare_runs`` fold the job's own stream, so a run is current the
moment its events are stored; ``list_runs`` pages the ``run_view`` read model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from sqlalchemy import Connection, Engine, exists

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import payload_name
from services.common.errors import InvalidArgument, NotFound
from services.common.identity import Caller
from services.orchestrator import job_domain, run_facts
from services.orchestrator.registry_domain import model_name_for
from services.orchestrator.registry_views import run_tags, run_view

MAX_COMPARE = 20

Point = tuple[int, float, int]  # (step, value, time_ms)


@dataclass(frozen=True)
class Run:
    run_id: str
    tenant_id: str
    name: str
    model_name: str
    state: str
    params: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    series: Mapping[str, Sequence[Point]] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    dataset_id: str = ""
    dataset_version_id: str = ""
    dataset_manifest_sha256: str = ""
    base_model_id: str = ""
    base_model_sha256: str = ""
    code_version: str = ""
    library_versions: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    hardware: str = ""
    config_sha256: str = ""
    requested_by: str = ""
    created_at_ms: int = 0
    started_at_ms: int = 0
    ended_at_ms: int = 0

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled", "rejected")


@dataclass(frozen=True)
class RunComparison:
    runs: list[Run]
    differing_params: list[str]   # parameters whose values are not the same in every run
    metric_names: list[str]       # every learning curve any of the runs has


def run_from_events(events: list[events_pb2.EventEnvelope]) -> Run:
    """The run a job's stream describes."""
    job = job_domain.fold(events)
    started = job.started
    duration = next((env.training_completed.duration_seconds for env in reversed(events)
                     if payload_name(env) == "training_completed"), 0.0)
    return Run(
        run_id=job.job_id, tenant_id=job.tenant_id, name=job.name, model_name=model_name_for(job),
        state=job.state_name, params=run_facts.run_params(job.request),
        metrics=run_facts.final_metrics(step=job.step, loss=job.loss, eval_loss=job.eval_loss,
                                        initial_eval_loss=job.initial_eval_loss, epsilon_spent=job.epsilon_spent,
                                        duration_seconds=duration),
        series=run_facts.series_from_events(events), tags=dict(job.request.experiment_tags),
        dataset_id=job.request.dataset_id, dataset_version_id=job.request.dataset_version_id,
        dataset_manifest_sha256=started.dataset_manifest_sha256, base_model_id=job.request.base_model_id,
        base_model_sha256=started.base_model_sha256, code_version=started.code_version,
        library_versions=dict(started.library_versions), seed=started.seed, hardware=started.hardware,
        config_sha256=started.config_sha256 or job.request.config_sha256, requested_by=job.requested_by,
        created_at_ms=job.created_at_ms, started_at_ms=job.started_at_ms, ended_at_ms=job.ended_at_ms)


def load_run(conn: Connection, tenant_id: str, run_id: str) -> Run | None:
    """The run of training job ``run_id`` in this tenant, or None."""
    events = eventstore.load_stream(conn, tenant_id, run_id)
    if not events or payload_name(events[0]) != "training_requested":
        return None
    return run_from_events(events)


def run_from_row(row: Mapping[str, Any]) -> Run:
    """A run summary from ``run_view`` (no learning curves)."""
    return Run(
        run_id=row["job_id"], tenant_id=row["tenant_id"], name=row["name"], model_name=row["model_name"],
        state=row["state"], params=json.loads(row["params_json"]),
        metrics=run_facts.final_metrics(step=row["step"], loss=row["loss"], eval_loss=row["eval_loss"],
                                        initial_eval_loss=row["initial_eval_loss"],
                                        epsilon_spent=row["epsilon_spent"], duration_seconds=row["duration_seconds"]),
        tags=json.loads(row["tags_json"]), dataset_id=row["dataset_id"], dataset_version_id=row["dataset_version_id"],
        dataset_manifest_sha256=row["dataset_manifest_sha256"], base_model_id=row["base_model_id"],
        base_model_sha256=row["base_model_sha256"], code_version=row["code_version"],
        library_versions=json.loads(row["library_versions_json"]), seed=row["seed"], hardware=row["hardware"],
        config_sha256=row["config_sha256"], requested_by=row["requested_by"], created_at_ms=row["created_at_ms"],
        started_at_ms=row["started_at_ms"], ended_at_ms=row["ended_at_ms"])


def differing_params(runs: Sequence[Run]) -> list[str]:
    """Parameter names whose value is not the same in every run (absent counts as a value)."""
    names = sorted({k for run in runs for k in run.params})
    return [k for k in names if len({run.params.get(k) for run in runs}) > 1]


class ExperimentTracker:
    """Runs of the caller's tenant."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_run(self, caller: Caller, run_id: str) -> Run:
        if not run_id:
            raise InvalidArgument("run_id is required (the training job id)")
        with self.engine.connect() as conn:
            run = load_run(conn, caller.tenant_id, run_id)
        if run is None:
            raise NotFound(f"run {run_id!r} not found in tenant {caller.tenant_id!r} (a run id is a training job id)")
        return run

    def list_runs(self, caller: Caller, tags: Mapping[str, str] | None = None, page_size: int = 50,
                  page_token: str = "") -> tuple[list[Run], str]:
        """A page of run summaries having all ``tags``, in job-id order; returns (runs, next_page_token)."""
        t = run_tags.c
        filters = [exists().where(t.tenant_id == run_view.c.tenant_id, t.job_id == run_view.c.job_id, t.key == key,
                                  t.value == value) for key, value in sorted((tags or {}).items())]
        rows, token = queries.page(self.engine, run_view, "job_id", caller.tenant_id, page_size, page_token,
                                   *filters, filters={"tags": sorted((tags or {}).items())})
        return [run_from_row(r) for r in rows], token

    def compare_runs(self, caller: Caller, run_ids: Sequence[str]) -> RunComparison:
        """Runs side by side: which parameters differ, and every learning curve they have."""
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            raise InvalidArgument("run_ids is required: give the training job ids to compare")
        if len(ids) > MAX_COMPARE:
            raise InvalidArgument(f"{len(ids)} runs given, at most {MAX_COMPARE} can be compared at once")
        runs = [self.get_run(caller, run_id) for run_id in ids]
        metric_names = sorted({name for run in runs for name in run.series})
        return RunComparison(runs=runs, differing_params=differing_params(runs), metric_names=metric_names)
