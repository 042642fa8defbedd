"""The base-model store's layout: the contract between the gpu_worker (which imports and
loads models) and the orchestrator (which sizes jobs from a model's config).

``<models_root>/<model_id>/`` holds a Hugging Face-format folder plus ``privtune-model.json``
(source, parameter count, the sha256 of every file and of their listing). Nothing here
imports torch: reading a manifest and a config is all a control plane needs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from services.common import file_cache

MANIFEST = "privtune-model.json"


def stored_model_ids(models_root: Path) -> list[str]:
    """Ids of the models in the store (folders with a manifest), sorted."""
    if not models_root.exists():
        return []
    return sorted(p.parent.name for p in models_root.glob(f"*/{MANIFEST}"))


def is_stored(models_root: Path, model_id: str) -> bool:
    """Whether ``model_id`` names a stored model (never a path outside the store)."""
    if not model_id or "/" in model_id or "\\" in model_id or model_id.startswith(".") or "\x00" in model_id:
        return False
    return (models_root / model_id / MANIFEST).is_file()


def read_manifest(models_root: Path, model_id: str) -> dict[str, Any]:
    """The model's recorded manifest (``model_id``, ``source``, ``parameters``, ``files``, ``sha256``).

    Parsed once per version of the file and shared (see file_cache): do not modify it."""
    return file_cache.parsed(models_root / model_id / MANIFEST, _read_json, "json")


def read_config(models_root: Path, model_id: str) -> dict[str, Any]:
    """The model's Hugging Face ``config.json`` (shared like ``read_manifest``'s)."""
    return file_cache.parsed(models_root / model_id / "config.json", _read_json, "json")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
