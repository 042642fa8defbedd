"""Deploy test helpers: a tiny base model and a LoRA adapter trained on it for real, copied out of tenant storage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from gpu_worker.job import run_job
from gpu_worker.synthetic import write_dataset_version
from services.common.storage import TenantStorage, open_tenant_storage
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, make_models, tiny_spec

if TYPE_CHECKING:
    from privtune.platform import Platform


def trained_adapter(root: Path) -> tuple[Path, Path, str]:
    """(base model folder, a LoRA adapter folder trained on it, the adapter's sha256 as the training run recorded it)."""
    make_models(root / "models")
    storage_root = str(root / "tenants")
    storage = open_tenant_storage(storage_root, TENANT)
    write_dataset_version(storage, "datasets/desk/versions/v1", support_tickets(64, 1), support_tickets(8, 2))
    spec = tiny_spec(storage.uri_for("datasets/desk/versions/v1"), "lora", job_id="serve-lora", max_steps=12,
                     learning_rate=0.05)
    done: list[dict] = []
    assert run_job(spec, root / "models", storage_root, root / "work",
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    adapter = copy_artifact(storage, done[0]["artifact_uri"], root / "adapter")
    return root / "models" / "tiny-llama", adapter, done[0]["artifact_sha256"]


def copy_artifact(storage: TenantStorage, uri: str, dest: Path) -> Path:
    """The artifact folder at ``uri`` in tenant storage, copied to ``dest`` (as a pool manager fetches it)."""
    key = storage.key_for(uri).rstrip("/")
    for entry in storage.list(key + "/"):
        target = dest / entry.key[len(key) + 1:]
        target.parent.mkdir(parents=True, exist_ok=True)
        with storage.open(entry.key) as fh:
            target.write_bytes(fh.read())
    return dest


def register_adapter(platform: "Platform", work: Path, name: str, version: int, *, seed: int = 7, steps: int = 12,
                     tenant: str = TENANT, sha256: str | None = None, suite_id: str = "") -> str:
    """A LoRA adapter trained for real on the platform's tiny base, registered as ``<name>/v<version>`` the way
    the orchestrator registers it (``sha256``: record another hash, as if the bytes changed after training)."""
    import uuid

    from privtune.v1 import events_pb2
    from services.common import eventstore
    from services.common.envelope import Causation, new_envelope
    from services.common.model_store import is_stored, read_manifest
    from services.orchestrator.registry_domain import model_stream_id

    models = platform.config.models_dir
    if not is_stored(models, "tiny-llama"):
        make_models(models)
    storage = open_tenant_storage(platform.config.storage_uri, tenant)
    data = f"datasets/{name}-{version}/versions/v1"
    write_dataset_version(storage, data, support_tickets(64, seed), support_tickets(8, seed + 1))
    job_id = f"{name}-{version}-job"
    spec = tiny_spec(storage.uri_for(data), "lora", job_id=job_id, max_steps=steps, learning_rate=0.05, seed=seed,
                     tenant_id=tenant)
    done: list[dict] = []
    assert run_job(spec, models, platform.config.storage_uri, work / job_id,
                   lambda kind, payload: done.append(payload) if kind == "completed" else None) == 0
    registered = events_pb2.ModelVersionRegistered(
        model_version_id=f"{name}/v{version}", model_name=name, version=version, kind="adapter",
        artifact_uri=done[0]["artifact_uri"], artifact_sha256=sha256 or done[0]["artifact_sha256"], job_id=job_id,
        base_model_id="tiny-llama", base_model_sha256=read_manifest(models, "tiny-llama")["sha256"],
        evaluation_suite_id=suite_id)
    with platform.engine.begin() as conn:  # type: ignore[union-attr]
        stream = model_stream_id(tenant, name)
        eventstore.append(conn, "registered_model", [new_envelope(
            registered, subject=stream, tenant_id=tenant, source="privtune/orchestrator",
            causation=Causation(actor="alice", correlation_id=uuid.uuid4().hex))],
            expected_version=eventstore.stream_version(conn, stream))
    return f"{name}/v{version}"


def record_evaluation(platform: "Platform", model_version_id: str, passed: bool, tenant: str = TENANT) -> str:
    """A gating evaluation of the version (requested by its registration) and its outcome, as eval records them."""
    import uuid

    from privtune.v1 import events_pb2
    from services.common import eventstore
    from services.common.envelope import Causation, new_envelope

    eval_id = f"eval-{uuid.uuid4().hex[:12]}"
    requested = events_pb2.EvalRequested(eval_id=eval_id, model_version_id=model_version_id,
                                         trigger="training_completed")
    done = events_pb2.EvalCompleted(eval_id=eval_id, model_version_id=model_version_id, passed=passed,
                                    reason="all gates passed" if passed else "domain_min_delta: -0.20 below -0.05")
    causation = Causation(actor="service:eval", correlation_id=uuid.uuid4().hex)
    with platform.engine.begin() as conn:  # type: ignore[union-attr]
        eventstore.append(conn, "eval_run", [new_envelope(e, subject=eval_id, tenant_id=tenant, source="privtune/eval",
                                                          causation=causation) for e in (requested, done)],
                          expected_version=0)
    return eval_id
