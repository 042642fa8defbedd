"""What the curation service runs: the CurationService API, the CurationWorkService (claims), the
job and dataset read models, and the recorder of workers' outcomes. The workers themselves are
the ``curation-worker`` service (worker_service.py), which needs no store."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.curation import dataset_catalog, grpc_api, job_view, work_grpc
from services.curation.application import CurationApplication


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    app = CurationApplication(engine)
    parts = ServiceParts(name="curation", bindings=[grpc_api.binding(app, stop), work_grpc.binding(app)],
                         projections=[job_view.PROJECTION, dataset_catalog.PROJECTION])
    if bus is not None:
        from services.curation.report_recorder import CurationReportRecorder

        parts.workers.append(CurationReportRecorder(engine, bus).run)
    return parts
