"""What the orchestrator runs: the TrainingService, registry and experiment APIs, their read
models, the privacy-ledger settlement, the model registration follow-up and the controller."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.orchestrator import grpc_api, job_view, mlflow_export, privacy_settlement, registry_grpc, registry_views
from services.orchestrator.application import TrainingJobApplication
from services.orchestrator.registry_application import RegistryApplication
from services.orchestrator.settings import OrchestratorSettings


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event,
          settings: OrchestratorSettings | None = None) -> ServiceParts:
    settings = settings or OrchestratorSettings.from_config(config)
    app = TrainingJobApplication(engine, settings)
    bindings = [grpc_api.binding(app, stop), *registry_grpc.bindings(RegistryApplication(engine), engine, stop)]
    parts = ServiceParts(name="orchestrator", bindings=bindings,
                         projections=[job_view.PROJECTION, privacy_settlement.PROJECTION,
                                      *registry_views.PROJECTIONS, *mlflow_export.exporter_projections()])
    if bus is not None:
        from services.orchestrator.controller import Controller
        from services.orchestrator.executors.launchers import configured_launchers

        controller = Controller(engine, settings, configured_launchers(dict(settings.pools)))  # type: ignore[arg-type]
        parts.workers.append(controller.run)
    return parts
