"""Atomic, verifiable checkpoints in a job's work folder.

A checkpoint is a folder ``step-<n>`` holding the trainable weights (safetensors), the
optimizer, scheduler and RNG states and ``state.json`` (step, data position, metrics,
privacy accounting), plus ``manifest.json`` with the sha256 of every file. It is built
in a temporary folder, every file fsynced, then renamed into place and the parent
folder fsynced: a checkpoint either exists completely or not at all. A folder whose
files no longer match its manifest is corrupt and skipped in favour of the previous.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from services.common.hashing import file_sha256, manifest_sha256

if TYPE_CHECKING:
    from services.common.storage import TenantStorage

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
PREFIX = "step-"


@dataclass(frozen=True)
class Checkpoint:
    checkpoint_id: str
    path: Path
    step: int
    sha256: str
    metrics: dict[str, float]


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def write_checkpoint(root: Path, step: int, write_files: Callable[[Path], None], metrics: dict[str, float]) -> Checkpoint:
    """Write a checkpoint atomically. ``write_files(folder)`` puts the payload files in."""
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        write_files(tmp)
        files = {p.name: file_sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        body = {"step": step, "files": files, "metrics": metrics, "sha256": manifest_sha256(files)}
        (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True))
        for p in tmp.iterdir():
            _fsync(p)
        _fsync(tmp)
        final = root / name
        if final.exists():  # a rerun of the same step (resume after a crash): replace it
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Checkpoint(name, final, step, body["sha256"], metrics)


def verify(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path`` if every file matches its manifest, else ``None``."""
    try:
        body = json.loads((path / MANIFEST).read_text())
        for name, digest in body["files"].items():
            if file_sha256(path / name) != digest:
                log.warning("checkpoint %s: %s does not match its sha256; skipping it", path.name, name)
                return None
        return Checkpoint(path.name, path, int(body["step"]), body["sha256"], dict(body.get("metrics", {})))
    except (OSError, ValueError, KeyError) as exc:
        log.warning("checkpoint %s is unreadable (%s); skipping it", path.name, exc)
        return None


def list_checkpoints(root: Path) -> list[Path]:
    return sorted(p for p in root.glob(f"{PREFIX}*") if p.is_dir()) if root.exists() else []


def latest_valid(root: Path) -> Checkpoint | None:
    """The newest checkpoint that verifies; corrupt or partial ones are skipped."""
    for path in reversed(list_checkpoints(root)):
        checkpoint = verify(path)
        if checkpoint is not None:
            return checkpoint
    return None


def apply_retention(root: Path, keep_last: int, best: str | None) -> list[str]:
    """Delete all but the newest ``keep_last`` checkpoints and ``best``; returns deleted ids."""
    paths = list_checkpoints(root)
    keep = {p.name for p in paths[-keep_last:]} | ({best} if best else set())
    deleted = []
    for path in paths:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path.name)
    for stale in root.glob(f".{PREFIX}*"):  # temp folders of a writer that died
        shutil.rmtree(stale, ignore_errors=True)
    return deleted


def read_state(checkpoint: Checkpoint) -> dict[str, Any]:
    return json.loads((checkpoint.path / "state.json").read_text())


def fetch_remote(storage: "TenantStorage", prefix: str, root: Path) -> Checkpoint | None:
    """Download the newest uploaded checkpoint under ``prefix`` that verifies into ``root``.

    Used when this machine has no local checkpoint of the job (its worker died elsewhere).
    """
    names = sorted({info.key[len(prefix) + 1:].split("/", 1)[0] for info in storage.list(prefix + "/")
                    if info.key[len(prefix) + 1:].startswith(PREFIX)}, reverse=True)
    for name in names:
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=_ensure(root)))
        for info in storage.list(f"{prefix}/{name}/"):
            with storage.open(info.key) as src, open(tmp / info.key.rsplit("/", 1)[-1], "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        if verify(tmp) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            continue
        final = root / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        return verify(final)
    return None


def _ensure(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root
