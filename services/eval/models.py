"""Load the models an eval compares: the base (reference), the candidate (base + artifact) and a judge.

Base models come from the model store (``<models_root>/<model_id>/``, see
:mod:`services.common.model_store`) and are checked against the sha256 the training run
recorded, so an eval never compares against a different base than the one trained on.
Candidate artifacts come from the tenant's storage and are copied into a local cache
folder named by their sha256, which is verified (the same folder hash the gpu_worker
records: ``manifest_sha256(folder_files(folder))``) before anything is loaded.

An artifact folder (written by the gpu_worker's export) is one of:

- ``adapter``: ``adapter_config.json`` + ``adapter_model.safetensors`` (PEFT), tokenizer
  files, optionally ``merged/`` (the adapter folded into the base, a Hugging Face folder);
- ``full``: a Hugging Face model folder (``config.json``, ``model.safetensors``, tokenizer);
- ``merged``: the ``merged/`` folder of an adapter artifact (or the artifact itself when
  it is a Hugging Face folder).

Every model is loaded in float32 and eval mode with gradients off. Loading is slow
(seconds to minutes), so :class:`ModelLoader` keeps the last few loaded models.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from services.common.artifacts import (  # noqa: F401 - eval's names for the shared checks
    MAX_ARTIFACT_BYTES, ArtifactMismatch, ModelMismatch, fetch_artifact, storage_key, verify_base_model)
from services.common.base_model_ref import parse_base_model_ref
from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.limits import quote
from services.common.storage import TenantStorage

ArtifactKind = Literal["adapter", "merged", "full"]
ARTIFACT_KINDS: tuple[str, ...] = ("adapter", "merged", "full")


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model and its tokenizer, with what identifies them (never a local path in messages)."""

    name: str          # base model id, or "<base id>+<artifact sha256 prefix>" for a candidate
    sha256: str        # the base model's or the artifact's sha256
    model: Any         # a transformers causal LM (or a peft.PeftModel wrapping one), eval mode, float32
    tokenizer: Any     # its tokenizer, with a pad token


# -- base models --------------------------------------------------------------------------------


def load_hf_model(folder: Path) -> tuple[Any, Any]:
    """A Hugging Face model folder as (model, tokenizer): float32, eval mode, no gradients."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return _frozen(model), prepare_tokenizer(AutoTokenizer.from_pretrained(folder))


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give the tokenizer a pad token (its EOS when it has none): batches need one."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _frozen(model: Any) -> Any:
    model.eval()
    model.requires_grad_(False)
    return model


# -- candidate artifacts --------------------------------------------------------------------------


def artifact_kind(folder: Path) -> ArtifactKind:
    """What an artifact folder holds: an ``adapter`` (PEFT files) or ``full`` weights (a HF folder)."""
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "full"
    raise FailedPrecondition("the artifact holds neither adapter_config.json (an adapter) nor config.json (full "
                             "weights); it is not a training artifact", reason="UNKNOWN_ARTIFACT_LAYOUT")


def build_candidate(artifact_dir: Path, kind: ArtifactKind, base_folder: Path, base_model_id: str) -> tuple[Any, Any]:
    """The candidate model (float32, eval mode) and tokenizer from a verified artifact folder.

    ``adapter``: a fresh copy of the base with the PEFT adapter on top (never the
    reference's copy: PEFT injects its layers into the model it wraps). ``merged``:
    ``merged/`` (or the folder itself). ``full``: the folder itself.

    Raises:
        InvalidArgument: unknown ``kind``.
        FailedPrecondition: the folder does not hold that kind of artifact.
        ModelMismatch: the adapter was trained on another base model.
    """
    if kind not in ARTIFACT_KINDS:
        raise InvalidArgument(f"artifact kind {quote(str(kind))} is not one of {', '.join(ARTIFACT_KINDS)}",
                              reason="BAD_ARTIFACT_KIND")
    if kind == "adapter":
        return _adapter_candidate(artifact_dir, base_folder, base_model_id)
    folder = artifact_dir / "merged" if kind == "merged" and (artifact_dir / "merged").is_dir() else artifact_dir
    if not (folder / "config.json").is_file():
        what = "a merged/ folder" if kind == "merged" else "config.json (full weights)"
        raise FailedPrecondition(f"the artifact has no {what}; evaluate it as kind 'adapter'",
                                 reason="ARTIFACT_KIND_MISMATCH")
    return load_hf_model(folder)


def _adapter_candidate(artifact_dir: Path, base_folder: Path, base_model_id: str) -> tuple[Any, Any]:
    from peft import PeftModel

    config_path = artifact_dir / "adapter_config.json"
    if not config_path.is_file():
        raise FailedPrecondition("the artifact has no adapter_config.json; evaluate it as kind 'full' or 'merged'",
                                 reason="ARTIFACT_KIND_MISMATCH")
    trained_on, _ = parse_base_model_ref(json.loads(config_path.read_text()).get("base_model_name_or_path"))
    if trained_on and trained_on != base_model_id:
        raise ModelMismatch(f"the adapter was trained on base model {quote(str(trained_on))}, not "
                            f"{quote(base_model_id)}; evaluate it against the base it was trained on",
                            reason="BASE_MODEL_MISMATCH")
    base, tokenizer = load_hf_model(base_folder)
    return _frozen(PeftModel.from_pretrained(base, artifact_dir)), tokenizer


# -- a process's loaded models ------------------------------------------------------------------------


class ModelCache:
    """The ``capacity`` most recently used models, keyed by (id, sha256); thread-safe.

    One shard needs the candidate and the reference (and a judge model when one is set:
    give such a worker ``capacity=3``); consecutive shards of one eval then load nothing.
    """

    def __init__(self, capacity: int = 2) -> None:
        if capacity < 1:
            raise ValueError("a model cache holds at least one model")
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str], ModelBundle] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str], load: Callable[[], ModelBundle]) -> ModelBundle:
        """The cached model for ``key``, or ``load()``'s (cached, evicting the least recently used)."""
        with self._lock:   # loads are serialised: two threads loading at once would hold both in memory
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            bundle = load()
            self._models[key] = bundle
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return bundle

    def keys(self) -> list[tuple[str, str]]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._models)


class ModelLoader:
    """Loads (and caches) the base, candidate and judge models of evals, on one eval worker."""

    def __init__(self, models_root: Path, artifact_cache: Path, capacity: int = 2) -> None:
        self.models_root = Path(models_root)
        self.artifact_cache = Path(artifact_cache)
        self.cache = ModelCache(capacity)

    def base(self, model_id: str, expected_sha256: str | None = None) -> ModelBundle:
        """A stored base model (the reference side, or a judge), checked against ``expected_sha256``."""
        sha = verify_base_model(self.models_root, model_id, expected_sha256, check_files=False)

        def load() -> ModelBundle:
            verify_base_model(self.models_root, model_id, sha)
            model, tokenizer = load_hf_model(self.models_root / model_id)
            return ModelBundle(model_id, sha, model, tokenizer)

        return self.cache.get((model_id, sha), load)

    def candidate(self, storage: TenantStorage, artifact_uri: str, artifact_sha256: str, base_model_id: str,
                  base_sha256: str | None = None, kind: ArtifactKind | None = None) -> ModelBundle:
        """The candidate: the artifact at ``artifact_uri`` (verified) on top of ``base_model_id``.

        ``kind`` None: an adapter when the folder holds one, else full weights. The
        artifact is fetched and verified when the candidate is loaded, not when a loaded
        copy is reused.
        """
        base_sha = verify_base_model(self.models_root, base_model_id, base_sha256, check_files=False)

        def load() -> ModelBundle:
            verify_base_model(self.models_root, base_model_id, base_sha)
            folder = fetch_artifact(storage, artifact_uri, artifact_sha256, self.artifact_cache)
            model, tokenizer = build_candidate(folder, kind or artifact_kind(folder), self.models_root / base_model_id,
                                               base_model_id)
            return ModelBundle(f"{base_model_id}+{artifact_sha256[:12]}", artifact_sha256, model, tokenizer)

        key = f"{storage_key(storage)}/{artifact_sha256}:{kind or 'auto'}+{base_model_id}"
        return self.cache.get((key, base_sha), load)
