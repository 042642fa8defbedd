"""Run one training job to its artifact, in this process (the worker runs it in a child).

``python -m gpu_worker.job SPEC.json --models-root M --storage-root S --work-dir W
[--events-fd N]`` trains (resuming from the newest good checkpoint in W), exports the
artifact, uploads checkpoints and artifact to the tenant's storage, and writes one
JSON object per line to fd N for the worker to turn into events. Exit status: 0 done,
2 failed (reported), 3 preempted by SIGTERM (checkpoint written), anything else crashed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from gpu_worker.base_models import ModelStoreError
from gpu_worker.data import DatasetError
from gpu_worker.export import export_artifact
from services.common.training_spec import TrainingSpec
from gpu_worker.run_environment import is_out_of_memory
from gpu_worker.trainer import Preempted, Trainer, TrainingError
from services.common.errors import BusUnavailable, PrivtuneError
from services.common.storage import TenantStorage, resolve_dataset

log = logging.getLogger(__name__)
EXIT_DONE, EXIT_FAILED, EXIT_PREEMPTED = 0, 2, 3

# What a TrainingFailed says for a failure privtune did not word itself. An exception's text can
# quote anything it touched (a record, a path, a token), so it goes to the job log in the tenant's
# work folder (and tenant storage), never onto the bus: the event carries the code and this text.
SAFE_REASONS = {
    "invalid_input": "the dataset version, base model or configuration could not be used ({kind}); the job log "
                     "in the tenant's storage has the details",
    "unavailable": "tenant storage or another dependency was unavailable ({kind}); the job is retried",
    "internal": "{kind} in the training process; the job log in the tenant's storage has the details",
}


def safe_failure(code: str, exc: BaseException) -> str:
    """The event's reason for ``exc``: the error code's fixed text and the exception's type, never its message."""
    log.error("training failed (%s): %s: %s", code, type(exc).__name__, exc)  # the job log keeps the details
    return SAFE_REASONS[code].format(kind=type(exc).__name__)


def job_prefix(spec: TrainingSpec) -> str:
    return f"training/{spec.job_id}"


class CheckpointUploader:
    """Copies finished checkpoints to tenant storage on a background thread.

    Training never waits for an upload; ``CheckpointSaved`` is emitted once the copy
    is durable, carrying its tenant-storage URI.
    """

    def __init__(self, storage: TenantStorage, prefix: str, emit: Callable[[str, dict[str, Any]], None]) -> None:
        self.storage, self.prefix, self.emit = storage, prefix, emit
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-upload")
        self.pending: list[Future[None]] = []

    def submit(self, payload: dict[str, Any]) -> None:
        self.pending.append(self.pool.submit(self._upload, dict(payload)))

    def _upload(self, payload: dict[str, Any]) -> None:
        folder = Path(payload.pop("path"))
        retired = payload.pop("retired", [])
        key = f"{self.prefix}/checkpoints/{payload['checkpoint_id']}"
        try:
            # the manifest goes last: a partial upload has none and is never taken for a checkpoint
            for item in sorted(folder.iterdir(), key=lambda p: (p.name == "manifest.json", p.name)):
                with open(item, "rb") as fh:
                    self.storage.write(f"{key}/{item.name}", iter(lambda: fh.read(1 << 20), b""))
        except FileNotFoundError:
            return  # retention removed it before the copy started; a newer checkpoint follows
        self.emit("checkpoint", {**payload, "uri": self.storage.uri_for(key)})
        for checkpoint_id in retired:  # the same retention in tenant storage, manifest first
            objects = sorted((o.key for o in self.storage.list(f"{self.prefix}/checkpoints/{checkpoint_id}/")),
                             key=lambda k: not k.endswith("/manifest.json"))
            for object_key in objects:
                self.storage.delete(object_key)

    def drain(self) -> None:
        for future in self.pending:
            future.result()
        self.pending.clear()

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def upload_folder(storage: TenantStorage, folder: Path, key: str) -> str:
    for item in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(item, "rb") as fh:
            storage.write(f"{key}/{item.relative_to(folder)}", iter(lambda: fh.read(1 << 20), b""))
    return storage.uri_for(key)


def run_job(spec: TrainingSpec, models_root: Path, storage_root: str, work_dir: Path,
            emit: Callable[[str, dict[str, Any]], None]) -> int:
    """Train, export and upload; report through ``emit``. Returns the exit status."""
    started = time.monotonic()
    lock = threading.Lock()

    def safe_emit(kind: str, payload: dict[str, Any]) -> None:
        with lock:
            emit(kind, payload)

    step = 0
    try:
        storage, dataset_prefix = resolve_dataset(spec.dataset_uri, storage_root, spec.tenant_id)
        uploader = CheckpointUploader(storage, job_prefix(spec), safe_emit)

        def trainer_emit(kind: str, payload: dict[str, Any]) -> None:
            if kind == "checkpoint":
                uploader.submit(payload)
            else:
                safe_emit(kind, payload)

        trainer = Trainer(spec, models_root, storage, dataset_prefix, work_dir, trainer_emit)
        try:
            trainer.setup()
            result = trainer.train()
            step = result["steps"]
            if trainer.rank != 0:
                return EXIT_DONE  # rank 0 exports and reports for the group
            provenance = {
                "config_sha256": spec.sha256(), "config": spec.artifact_config(),
                "dataset_manifest_sha256": trainer.dataset_sha256, "base_model": spec.base_model,
                "base_model_sha256": trainer.base.sha256, "steps": result["steps"],
                "epsilon_spent": result["epsilon"], "effective_batch_size": spec.effective_batch_size,
                "torch_threads": trainer.threads, "precision": trainer.precision,
            }
            artifact = work_dir / "artifact"
            sha = export_artifact(trainer.model, trainer.tokenizer, spec, trainer.base, artifact, provenance)
            uri = upload_folder(storage, artifact, f"{job_prefix(spec)}/artifact")
            uploader.drain()
        finally:
            uploader.close()
        safe_emit("completed", {"artifact_uri": uri, "artifact_sha256": sha, "steps": result["steps"],
                                "final_loss": result["final_loss"], "eval_loss": result["eval_loss"],
                                "initial_eval_loss": result["initial_eval_loss"],
                                "epsilon_spent": result["epsilon"],
                                "duration_seconds": time.monotonic() - started})
        return EXIT_DONE
    except Preempted as exc:
        safe_emit("preempted", {"reason": str(exc)})
        return EXIT_PREEMPTED
    except TrainingError as exc:
        safe_emit("failed", {"error_code": exc.code, "reason": exc.reason, "retryable": exc.retryable,
                             "step": exc.step})
        return EXIT_FAILED
    except (DatasetError, ModelStoreError) as exc:  # privtune's own words (see DatasetError.safe_reason)
        log.error("training failed (invalid_input): %s: %s", type(exc).__name__, exc)
        reason = exc.safe_reason if isinstance(exc, DatasetError) else str(exc)
        safe_emit("failed", {"error_code": "invalid_input", "reason": reason, "retryable": False, "step": step})
        return EXIT_FAILED
    except ValueError as exc:
        safe_emit("failed", {"error_code": "invalid_input", "reason": safe_failure("invalid_input", exc),
                             "retryable": False, "step": step})
        return EXIT_FAILED
    except PrivtuneError as exc:
        retryable = isinstance(exc, BusUnavailable)
        code = "unavailable" if retryable else "invalid_input"
        safe_emit("failed", {"error_code": code, "reason": safe_failure(code, exc), "retryable": retryable,
                             "step": step})
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - reported by type only: messages may quote data
        if is_out_of_memory(exc):
            safe_emit("failed", {"error_code": "out_of_memory", "retryable": False, "step": step, "reason":
                                 "out of memory while loading or exporting; lower max_seq_length or "
                                 "micro_batch_size, or use a smaller method (lora, qlora)"})
            return EXIT_FAILED
        log.exception("job %s failed", spec.job_id)
        safe_emit("failed", {"error_code": "internal", "retryable": True, "step": step,
                             "reason": SAFE_REASONS["internal"].format(kind=type(exc).__name__)})
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu_worker.job", description=__doc__)
    parser.add_argument("spec", type=Path)
    parser.add_argument("--models-root", type=Path, required=True)
    parser.add_argument("--storage-root", required=True)
    parser.add_argument("--work-dir", type=Path, required=True)
    parser.add_argument("--events-fd", type=int, default=None, help="write JSON events here (default stdout)")
    parser.add_argument("--events-file", type=Path, default=None,
                        help="append JSON events to this file instead (torchrun does not pass file descriptors)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.events_file is not None:
        out = open(args.events_file, "a", buffering=1)
    elif args.events_fd is not None:
        out = os.fdopen(args.events_fd, "w", buffering=1)
    else:
        out = sys.stdout

    def emit(kind: str, payload: dict[str, Any]) -> None:
        out.write(json.dumps({"kind": kind, **payload}, sort_keys=True) + "\n")
        out.flush()

    spec = TrainingSpec.model_validate_json(args.spec.read_text())
    return run_job(spec, args.models_root, args.storage_root, args.work_dir, emit)


if __name__ == "__main__":
    sys.exit(main())
