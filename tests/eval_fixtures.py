"""Eval test helpers: a fine-tuned tiny model registered as the orchestrator's registry would."""

from __future__ import annotations

import uuid
from pathlib import Path

from gpu_worker.job import run_job
from gpu_worker.synthetic import write_dataset_version
from privtune.platform import Platform
from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.envelope import Causation, new_envelope
from services.common.model_store import read_manifest
from services.common.storage import open_tenant_storage
from services.orchestrator.registry_domain import model_stream_id
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, tiny_spec


def register_model(platform: Platform, tmp_path: Path, name: str = "crash-bot", tenant: str = TENANT) -> str:
    """A fine-tuned tiny model, registered as the orchestrator would (ModelVersionRegistered)."""
    storage_root = platform.config.storage_uri
    storage = open_tenant_storage(storage_root, tenant)
    write_dataset_version(storage, f"datasets/{name}/versions/v1", support_tickets(128, 1), support_tickets(8, 3))
    spec = tiny_spec(storage.uri_for(f"datasets/{name}/versions/v1"), "full", job_id=f"{name}-job", max_steps=20,
                     learning_rate=0.003, tenant_id=tenant)
    done: list[dict] = []
    assert run_job(spec, platform.config.models_dir, storage_root, tmp_path / f"work-{name}",
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    base = read_manifest(platform.config.models_dir, "tiny-llama")
    registered = events_pb2.ModelVersionRegistered(
        model_version_id=f"{name}/v1", model_name=name, version=1, kind="full",
        artifact_uri=done[0]["artifact_uri"], artifact_sha256=done[0]["artifact_sha256"], job_id=f"{name}-job",
        base_model_id="tiny-llama", base_model_sha256=base["sha256"])
    with platform.engine.begin() as conn:  # type: ignore[union-attr]
        eventstore.append(conn, "registered_model", [new_envelope(
            registered, subject=model_stream_id(tenant, name), tenant_id=tenant, source="privtune/orchestrator",
            causation=Causation(actor="alice", correlation_id=uuid.uuid4().hex))], expected_version=0)
    return f"{name}/v1"
