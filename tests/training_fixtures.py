"""Tiny models, synthetic dataset versions and job processes for gpu_worker tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

from gpu_worker.base_models import build_tiny_model
from services.common.training_spec import TrainingSpec
from gpu_worker.synthetic import reverse_task, write_dataset_version
from services.common.storage import open_tenant_storage

TENANT = "acme"
REPO = Path(__file__).resolve().parents[1]
SHAPES = {"dpo": "preference", "continued_pretraining": "text"}
# Learning rates that move a tiny random model visibly in ~30 steps.
LEARNING_RATES = {"prompt_tuning": 0.3}


def make_models(root: Path) -> Path:
    build_tiny_model(root)
    return root


def make_dataset(storage_root: str, method: str = "lora", n: int = 256, holdout: int = 32,
                 name: str = "v1") -> str:
    """A reverse-the-word dataset version in the shape ``method`` trains on; returns its URI."""
    storage = open_tenant_storage(storage_root, TENANT)
    shape = SHAPES.get(method, "chat")
    prefix = f"datasets/synthetic/versions/{name}-{shape}"
    write_dataset_version(storage, prefix, reverse_task(n, 1, shape), reverse_task(holdout, 2, shape))
    return storage.uri_for(prefix)


def tiny_spec(dataset_uri: str, method: str = "lora", job_id: str = "job-1", **overrides: Any) -> TrainingSpec:
    body: dict[str, Any] = {
        "job_id": job_id, "tenant_id": TENANT, "method": method, "base_model": "tiny-llama",
        "dataset_uri": dataset_uri, "max_steps": 30, "micro_batch_size": 8, "checkpoint_every": 10,
        "learning_rate": LEARNING_RATES.get(method, 0.01), "seed": 7}
    body.update(overrides)
    return TrainingSpec.model_validate(body)


def start_job_process(spec: TrainingSpec, models: Path, storage_root: str, work: Path,
                      env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m gpu_worker.job`` with events on stdout, as the worker runs it (``env`` added to ours)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.json").write_text(spec.canonical_json())
    return subprocess.Popen(
        [sys.executable, "-m", "gpu_worker.job", str(work / "spec.json"), "--models-root", str(models),
         "--storage-root", storage_root, "--work-dir", str(work)],
        stdout=subprocess.PIPE, stderr=open(work / "job.log", "ab"), text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def events_of(process: subprocess.Popen[str]) -> Iterator[dict[str, Any]]:
    assert process.stdout is not None
    for line in process.stdout:
        yield json.loads(line)


def run_to_end(spec: TrainingSpec, models: Path, storage_root: str, work: Path,
               env: dict[str, str] | None = None) -> tuple[int, list[dict[str, Any]]]:
    process = start_job_process(spec, models, storage_root, work, env)
    events = list(events_of(process))
    return process.wait(timeout=600), events


def completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    done = [e for e in events if e["kind"] == "completed"]
    assert done, f"job did not complete: {[e for e in events if e['kind'] == 'failed']}"
    return done[0]
