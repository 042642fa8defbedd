"""Queue a training job directly on the bus (until the orchestrator's API fronts it)."""

from __future__ import annotations

from sqlalchemy import Engine

from gpu_worker.requests import to_request
from gpu_worker.spec import TrainingSpec
from gpu_worker.worker import STREAM_TYPE
from services.common import eventstore
from services.common.envelope import Causation, new_envelope

SOURCE = "privtune/training"


def submit_training(engine: Engine, spec: TrainingSpec, actor: str, name: str = "") -> None:
    """Append ``TrainingRequested`` to a new job stream; the outbox relay publishes it."""
    env = new_envelope(to_request(spec, name=name), subject=spec.job_id, tenant_id=spec.tenant_id, source=SOURCE,
                       causation=Causation(actor=actor, correlation_id=spec.job_id, causation_id=""))
    with engine.begin() as conn:
        eventstore.append(conn, STREAM_TYPE, [env], expected_version=0)
