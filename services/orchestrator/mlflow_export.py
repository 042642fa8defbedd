"""Export runs to an MLflow tracking server (``mlflow-skinny``'s ``MlflowClient``).

Only parameters, metric histories, hashes and tags leave the platform, never data.
One MLflow experiment per tenant and model name (or the run's ``experiment`` tag);
the MLflow run carries tag ``privtune.run_id``, so exporting again updates that run
instead of creating a second one.

With ``PRIVTUNE_MLFLOW_TRACKING_URI`` set, the ``tracker.mlflow_export`` follow-up
exports every run as it finishes.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy import Connection

from privtune.v1 import events_pb2
from services.common.envelope import payload_name
from services.common.projection import Projection
from services.common.topics import TRAINING_EVENTS
from services.orchestrator.tracker import Run, load_run

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)
TRACKING_URI_ENV = "PRIVTUNE_MLFLOW_TRACKING_URI"
RUN_ID_TAG = "privtune.run_id"
GROUP = "tracker.mlflow_export"
FINISHING = ("training_completed", "training_failed", "training_cancelled")
STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "rejected": "KILLED"}
# MLflow's per-request limits for log_batch
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100

T = TypeVar("T")


def experiment_name(run: Run) -> str:
    return f"privtune/{run.tenant_id}/{run.tags.get('experiment') or run.model_name}"


def provenance_tags(run: Run) -> dict[str, str]:
    """Tags that say where the run came from: ids and hashes only."""
    tags = {
        RUN_ID_TAG: run.run_id, "privtune.tenant_id": run.tenant_id, "privtune.state": run.state,
        "privtune.model_name": run.model_name, "privtune.dataset_id": run.dataset_id,
        "privtune.dataset_version_id": run.dataset_version_id,
        "privtune.dataset_manifest_sha256": run.dataset_manifest_sha256,
        "privtune.base_model_id": run.base_model_id, "privtune.base_model_sha256": run.base_model_sha256,
        "privtune.code_version": run.code_version, "privtune.config_sha256": run.config_sha256,
        "privtune.seed": str(run.seed), "privtune.hardware": run.hardware, "mlflow.user": run.requested_by,
    }
    tags.update({f"privtune.library.{name}": version for name, version in run.library_versions.items()})
    tags.update(run.tags)
    return {k: v for k, v in tags.items() if v}


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _find_or_create_run(client: MlflowClient, run: Run) -> str:
    name = experiment_name(run)
    experiment = client.get_experiment_by_name(name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(
        name, tags={"privtune.tenant_id": run.tenant_id})
    found = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.run_id}'",
                               max_results=1)
    if found:
        return found[0].info.run_id
    created = client.create_run(experiment_id, start_time=run.started_at_ms or run.created_at_ms or None,
                                tags={RUN_ID_TAG: run.run_id}, run_name=run.name or run.run_id)
    return created.info.run_id


def _new_points(client: MlflowClient, mlflow_run_id: str, run: Run, logged_keys: set[str]) -> list:
    from mlflow.entities import Metric

    metrics = []
    for name, points in sorted(run.series.items()):
        have = {(m.step, m.value) for m in client.get_metric_history(mlflow_run_id, name)} \
            if name in logged_keys else set()
        metrics += [Metric(name, value, at, step) for step, value, at in points if (step, value) not in have]
    final_at = run.ended_at_ms or run.started_at_ms or run.created_at_ms
    final_step = int(run.metrics.get("step", 0))
    for name, value in sorted(run.metrics.items()):
        key = f"final.{name}"
        have = {(m.step, m.value) for m in client.get_metric_history(mlflow_run_id, key)} \
            if key in logged_keys else set()
        if (final_step, value) not in have:
            metrics.append(Metric(key, value, final_at, final_step))
    return metrics


def export_run(run: Run, tracking_uri: str) -> str:
    """Create or update the MLflow run of ``run``; returns the MLflow run id.

    Idempotent: metric points already logged are not logged again, parameters and tags
    are set to the same values.
    """
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow_run_id = _find_or_create_run(client, run)
    existing = client.get_run(mlflow_run_id).data
    params = [Param(k, v) for k, v in sorted(run.params.items()) if existing.params.get(k) != v]
    tags = [RunTag(k, v) for k, v in sorted(provenance_tags(run).items()) if existing.tags.get(k) != v]
    metrics = _new_points(client, mlflow_run_id, run, set(existing.metrics))
    for chunk in _chunks(params, MAX_PARAMS):
        client.log_batch(mlflow_run_id, params=chunk)
    for chunk in _chunks(tags, MAX_TAGS):
        client.log_batch(mlflow_run_id, tags=chunk)
    for chunk in _chunks(metrics, MAX_METRICS):
        client.log_batch(mlflow_run_id, metrics=chunk)
    if run.state in STATUS:
        client.set_terminated(mlflow_run_id, status=STATUS[run.state], end_time=run.ended_at_ms or None)
    log.info("exported run %s to MLflow run %s (%d params, %d new metric points)", run.run_id, mlflow_run_id,
             len(params), len(metrics))
    return mlflow_run_id


class MlflowExporter:
    """Follow-up: exports a run when its job finishes (in the consumer's transaction, so exactly once
    per finishing event; a failed export raises and the consumer retries it)."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def apply(self, conn: Connection, env: events_pb2.EventEnvelope) -> None:
        if payload_name(env) not in FINISHING:
            return
        run = load_run(conn, env.tenant_id, env.subject)
        if run is None or not run.finished:
            return  # not in this store, or a failure that will be retried
        export_run(run, self.tracking_uri)

    def projection(self) -> Projection:
        return Projection(name=GROUP, topics=(TRAINING_EVENTS,), tables=(), apply=self.apply)


def exporter_projections(environ: Mapping[str, str] = os.environ) -> list[Projection]:
    """``[the exporter]`` when ``PRIVTUNE_MLFLOW_TRACKING_URI`` is set, else ``[]``."""
    uri = environ.get(TRACKING_URI_ENV, "").strip()
    return [MlflowExporter(uri).projection()] if uri else []
