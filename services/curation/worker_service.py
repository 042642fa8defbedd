"""What a curation worker process runs: members of group ``curation.worker``.

A worker needs the bus, tenant storage, its work folder and the curation service's gRPC
address (to claim jobs), never the metadata store: ``NEEDS_STORE`` tells the platform not
to open one for it (``privtune serve curation-worker --bus … --curation host:port``).
"""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts

NEEDS_STORE = False


def build(engine: Engine | None, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    parts = ServiceParts(name="curation-worker")
    if bus is not None:
        from services.common.auth.channels import component_credentials
        from services.curation.claims import GrpcCurationClaims
        from services.curation.worker import CurationWorker, load_or_create_secret

        def run_worker(stop_event: threading.Event) -> None:
            claims = GrpcCurationClaims(lambda: config.curation_target,
                                        credentials=component_credentials(config, "worker", "curation"))
            worker = CurationWorker(bus, claims, config.storage_uri,
                                    load_or_create_secret(config.data_dir / "keys" / "pii-pseudonym.key"),
                                    config.work_dir)
            try:
                worker.run(stop_event)
            finally:
                worker.close()
                claims.close()

        parts.workers.append(run_worker)
    return parts
