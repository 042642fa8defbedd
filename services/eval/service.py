"""What the eval service runs: the EvalService API, the EvalWorkService (shard claims), its read
models (runs, and its catalogs of model and dataset versions), the recorder of workers' shard
reports, the finaliser that completes runs, and the trigger that requests an evaluation when a
model version of a job with a suite is registered. The workers themselves are the
``eval-worker`` service (worker_service.py), which needs no store."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.eval import catalog, grpc_api, run_view, trigger, work_grpc
from services.eval.application import EvalApplication


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    app = EvalApplication(engine, config.storage_uri, config.models_dir)
    parts = ServiceParts(name="eval", bindings=[grpc_api.binding(app, stop), work_grpc.binding(app)],
                         projections=[run_view.PROJECTION, catalog.PROJECTION])
    if bus is not None:
        from services.eval.finaliser import Finaliser
        from services.eval.recorder import ShardReportRecorder

        parts.workers.append(ShardReportRecorder(engine, bus).run)
        parts.workers.append(Finaliser(engine, bus, config.storage_uri).run)
        parts.workers.append(trigger.AutoEvaluator(engine, bus, app).run)
    return parts
