"""Export runs to an MLflow tracking server (``mlflow-skinny``'s ``MlflowClient``).

Only parameters, metric histories, hashes and tags leave the platform, never data.
One MLflow experiment per tenant and model name (or the run's ``experiment`` tag);
the MLflow run carries tag ``privtune.run_id``, so exporting again updates that run
instead of creating a second one.

With ``PRIVTUNE_MLFLOW_TRACKING_URI`` set, the orchestrator runs ``MlflowExporter``
(consumer group ``tracker.mlflow_export``), which exports every run as it finishes.
MLflow is another system over the network, so its calls cannot share a transaction
with the store: the exporter reads the run in one short transaction, calls MLflow with
no transaction open (a slow or hung server never holds the store's locks), then records
the event as exported in a second short transaction, before committing the offset.
The guarantee is **at-least-once calls, made idempotent by the run-id tag**: a crash or
error after MLflow has the run and before that record redelivers the event, and the
export runs again, updating the same MLflow run (metric points already logged are not
logged twice). An event recorded as exported is not exported again.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy import Connection, Engine, insert, select

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Record
from services.common.clock import now_ms
from services.common.consumer import dead_letter_message
from services.common.envelope import payload_name
from services.common.errors import BusUnavailable, MalformedEvent
from services.common.keepalive import keep_membership, keepalive_interval
from services.common.store.schema import processed_events
from services.common.supervision import run_loop
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
    """Consumer group ``tracker.mlflow_export``: exports each run to MLflow when its job finishes.

    Per finishing event: one short transaction reads the run (and whether this event was
    already exported), MLflow is called with no transaction open, and a second short
    transaction records the event id in ``processed_events``; offsets are committed after
    that. See the module docstring for the guarantee (at-least-once, idempotent calls).
    """

    def __init__(self, engine: Engine, bus: EventBus, tracking_uri: str) -> None:
        self.engine = engine
        self.bus = bus
        self.tracking_uri = tracking_uri
        self.keepalive_interval = keepalive_interval(bus.uri)
        self.subscription = bus.subscribe(GROUP, [TRAINING_EVENTS])

    def poll_and_export(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        """Export the finished runs of one batch, then commit its offsets. Returns the records handled."""
        records = self.subscription.poll(max_records=max_records, timeout=timeout)
        for record in records:
            try:
                env = codec.decode(record.value)
            except MalformedEvent as exc:
                self.bus.publish([dead_letter_message(record, GROUP, exc)])
                continue
            if payload_name(env) in FINISHING:
                with keep_membership(self.subscription, self.keepalive_interval, GROUP):
                    self.export_event(env)
        self.subscription.commit(records)
        return records

    def export_event(self, env: events_pb2.EventEnvelope) -> None:
        """Export the run that ``env`` finished, unless this event was exported already."""
        with self.engine.connect() as conn:  # closed before MLflow is called
            if self._exported(conn, env.id):
                return
            run = load_run(conn, env.tenant_id, env.subject)
        if run is not None and run.finished:  # else: not in this store, or a failure that will be retried
            export_run(run, self.tracking_uri)
        with self.engine.begin() as conn:
            if not self._exported(conn, env.id):
                conn.execute(insert(processed_events).values(consumer=GROUP, event_id=env.id,
                                                             processed_at_ms=now_ms()))

    @staticmethod
    def _exported(conn: Connection, event_id: str) -> bool:
        return conn.execute(select(processed_events.c.event_id).where(
            processed_events.c.consumer == GROUP, processed_events.c.event_id == event_id)).first() is not None

    def run(self, stop: threading.Event) -> None:
        """Export until ``stop`` is set. A failed batch (MLflow or the store down) is retried with
        backoff after rejoining the group, which redelivers it."""
        run_loop(f"consumer {GROUP}", lambda: bool(self.poll_and_export(timeout=0.5)), stop, idle_seconds=0.0,
                 on_error=self._rejoin, max_backoff=30.0)

    def _rejoin(self) -> None:
        try:
            self.subscription.close()
        except Exception:  # noqa: BLE001 - the old member may already be gone
            log.debug("closing the failed member of %s", GROUP, exc_info=True)
        try:
            self.subscription = self.bus.subscribe(GROUP, [TRAINING_EVENTS])
        except BusUnavailable as exc:
            log.warning("MLflow exporter: cannot rejoin yet: %s", exc)

    def close(self) -> None:
        self.subscription.close()


def exporter_workers(engine: Engine, bus: EventBus,
                     environ: Mapping[str, str] = os.environ) -> list[Callable[[threading.Event], None]]:
    """``[the exporter's loop]`` when ``PRIVTUNE_MLFLOW_TRACKING_URI`` is set, else ``[]``."""
    uri = environ.get(TRACKING_URI_ENV, "").strip()
    if not uri:
        return []

    def run_exporter(stop: threading.Event) -> None:
        exporter = MlflowExporter(engine, bus, uri)
        try:
            exporter.run(stop)
        finally:
            exporter.close()

    return [run_exporter]
