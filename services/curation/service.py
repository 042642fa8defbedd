"""What the curation service runs: the CurationService API, the job read model and the worker."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.curation import dataset_catalog, grpc_api, job_view
from services.curation.application import CurationApplication


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    parts = ServiceParts(name="curation", bindings=[grpc_api.binding(CurationApplication(engine), stop)],
                         projections=[job_view.PROJECTION, dataset_catalog.PROJECTION])
    if bus is not None:
        from services.curation.worker import CurationWorker, load_or_create_secret

        def run_worker(stop_event: threading.Event) -> None:
            worker = CurationWorker(engine, bus, config.storage_uri,
                                    load_or_create_secret(config.data_dir / "keys" / "pii-pseudonym.key"),
                                    config.work_dir)
            try:
                worker.run(stop_event)
            finally:
                worker.close()

        parts.workers.append(run_worker)
    return parts
