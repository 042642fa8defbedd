"""Deploy test helpers: a tiny base model and a LoRA adapter trained on it for real, copied out of tenant storage."""

from __future__ import annotations

from pathlib import Path

from gpu_worker.job import run_job
from gpu_worker.synthetic import write_dataset_version
from services.common.storage import TenantStorage, open_tenant_storage
from tests.generators.support_task import support_tickets
from tests.training_fixtures import TENANT, make_models, tiny_spec


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
