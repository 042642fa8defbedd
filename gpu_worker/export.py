"""Turn a trained model into a content-addressed artifact folder.

- adapter methods: ``adapter_model.safetensors`` + ``adapter_config.json`` (PEFT's
  format, which PEFT and vLLM load), with the base model recorded as the model store's
  id and its sha256 (:mod:`services.common.base_model_ref`: never a hub id PEFT would
  look up on the network, never a path that differs between machines);
- full fine-tuning: ``model.safetensors`` + config + tokenizer;
- optionally ``merged/``: adapter merged into a freshly loaded full-precision base
  (for QLoRA that is the dequantised base), loadable with plain transformers.

``privtune-artifact.json`` records the run's provenance; the artifact sha256 is the
hash of the listing of every file's sha256, so two identical runs share one id.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gpu_worker.base_models import BaseModel
from services.common.base_model_ref import base_model_ref
from services.common.hashing import folder_files, manifest_sha256
from services.common.training_spec import TrainingSpec

PROVENANCE = "privtune-artifact.json"


def _clean_adapter_folder(folder: Path, base: BaseModel) -> None:
    (folder / "README.md").unlink(missing_ok=True)  # PEFT's model card: templated, not needed
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = base_model_ref(base.model_id, base.sha256)
    for key, value in config.items():  # PEFT keeps target_modules as a set: order varies per process
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def export_artifact(model: Any, tokenizer: Any, spec: TrainingSpec, base: BaseModel, dest: Path,
                    provenance: dict[str, Any]) -> str:
    """Write the artifact into ``dest`` (replaced) and return its sha256."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if spec.method == "full":
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
    else:
        model.save_pretrained(dest, safe_serialization=True)
        _clean_adapter_folder(dest, base)
        tokenizer.save_pretrained(dest)
        if spec.merge_weights and spec.method != "prompt_tuning":
            merge_into_base(dest, base, dest / "merged")
    (dest / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
    return artifact_sha256(dest)


def merge_into_base(adapter_dir: Path, base: BaseModel, dest: Path) -> None:
    """Fold a LoRA adapter into a full-precision copy of its base (``merge_and_unload``)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(dest, safe_serialization=True)
    AutoTokenizer.from_pretrained(base.path).save_pretrained(dest)


def artifact_sha256(folder: Path) -> str:
    return manifest_sha256(folder_files(folder))
