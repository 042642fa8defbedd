"""What the ingest service runs: the DatasetService API and the dataset read model."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from services.common.bus import EventBus
from services.common.config import PlatformConfig
from services.common.service import ServiceParts
from services.ingest import dataset_view, grpc_api
from services.ingest.application import DatasetApplication


def build(engine: Engine, bus: EventBus | None, config: PlatformConfig, stop: threading.Event) -> ServiceParts:
    app = DatasetApplication(engine, config.storage_uri)
    return ServiceParts(name="ingest", bindings=[grpc_api.binding(app, stop)], projections=[dataset_view.PROJECTION])
