"""What the orchestrator runs: the TrainingService, TrainingAttemptService (claims), registry and
experiment APIs, their read models, the privacy-ledger settlement, the model registration
follow-up, the controller and the recorder of workers' reports."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.orchestrator import (attempt_grpc, catalog, grpc_api, job_view, mlflow_export, privacy_settlement,
                                   registry_grpc, registry_views)
from services.orchestrator.application import TrainingJobApplication
from services.orchestrator.registry_application import RegistryApplication
from services.orchestrator.settings import OrchestratorSettings


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event,
          settings: OrchestratorSettings | None = None) -> ServiceParts:
    settings = settings or OrchestratorSettings.from_config(config)
    app = TrainingJobApplication(engine, settings)
    bindings = [grpc_api.binding(app, stop), attempt_grpc.binding(app),
                *registry_grpc.bindings(RegistryApplication(engine), engine, stop)]
    parts = ServiceParts(name="orchestrator", bindings=bindings,
                         projections=[job_view.PROJECTION, catalog.PROJECTION, privacy_settlement.PROJECTION,
                                      *registry_views.PROJECTIONS])
    if bus is not None:
        from services.orchestrator.controller import Controller
        from services.orchestrator.executors.launchers import configured_launchers
        from services.orchestrator.report_recorder import ReportRecorder

        controller = Controller(engine, settings, configured_launchers(dict(settings.pools), config),  # type: ignore[arg-type]
                                bus=bus)
        parts.workers.append(controller.run)
        parts.workers.append(ReportRecorder(engine, bus).run)
        parts.workers.extend(mlflow_export.exporter_workers(engine, bus))  # when an MLflow URI is set
    return parts
