"""What the training service runs in a platform process: the gpu_worker pool member.

A worker needs the bus and the orchestrator's gRPC API (to claim attempts), never the
metadata store: ``NEEDS_STORE`` tells the platform not to open one for it.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts

NEEDS_STORE = False


def build(engine: Engine | None, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    parts = ServiceParts(name="training")
    if bus is not None:
        from gpu_worker.claims import GrpcAttemptClaims
        from services.common.auth.channels import component_credentials
        from gpu_worker.worker import TrainingWorker, WorkerSettings

        settings = WorkerSettings(models_dir=config.models_dir, storage_uri=config.storage_uri,
                                  work_dir=config.work_dir,
                                  heartbeat_seconds=float(os.environ.get("PRIVTUNE_HEARTBEAT_S", "10")))

        def run_worker(stop_event: threading.Event) -> None:
            # resolved per claim: in `privtune up` the API's port is known only once it serves
            claims = GrpcAttemptClaims(lambda: config.orchestrator_target, stop=stop_event,
                                       credentials=component_credentials(config, "worker", "training"))
            worker = TrainingWorker(bus, claims, settings)
            try:
                worker.run(stop_event)
            finally:
                worker.close()
                claims.close()

        parts.workers.append(run_worker)
    return parts
