"""Fuse several LoRA adapters trained on the same base model into one LoRA adapter.

Every method works on the full update each adapter makes to a target module,
``ΔW_i = B_i · A_i · scaling_i`` (``scaling = alpha / r``, or ``alpha / √r`` with rsLoRA),
never on the ``A`` and ``B`` factors separately: products of merged factors carry
cross terms (``(A_1 + A_2)(B_1 + B_2) ≠ A_1B_1 + A_2B_2``), so factor-wise merging is
not the method the papers describe.

- ``linear``: task arithmetic, ``ΔW = Σ w_i ΔW_i``. Exact: the result has rank at most
  ``Σ r_i``, which is the rank of the merged adapter.
- ``ties``: TIES-Merging (Yadav et al., 2023, "TIES-Merging: Resolving Interference When
  Merging Models", arXiv:2306.01708). Each weighted update ``w_i ΔW_i`` is *trimmed* to
  its top ``density`` fraction of entries by magnitude; every entry *elects* the sign
  with the larger total mass ``sign(Σ_i w_i ΔW_i)`` (ties go to ``+``); the *disjoint
  mean* averages, per entry, only the updates that are non-zero and agree with the
  elected sign. Weights scale each update before the election, so a negative weight
  subtracts an adapter and ``w = [λ, λ]`` gives the paper's ``λ · τ_m``.
- ``dare_linear`` / ``dare_ties``: DARE (Yu et al., 2023, "Language Models are Super
  Mario: Absorbing Abilities from Homologous Models as a Free Lunch", arXiv:2311.03099).
  Each update drops every entry with probability ``1 - density`` and rescales the
  survivors by ``1 / density`` (unbiased in expectation), then the updates are summed
  with their weights (``dare_linear``) or combined by TIES' sign election and disjoint
  mean (``dare_ties``, no further magnitude trim). The drop masks come from a
  ``torch.Generator`` seeded from ``seed`` and the module name, so a merge is
  reproducible and one module's mask does not depend on the others.

The merged ``ΔW`` of each module is factorised again by a truncated SVD into
``B = U·√S`` and ``A = √S·Vᴴ`` with ``lora_alpha = r`` (scaling 1), giving a plain PEFT
LoRA folder. Its rank is ``Σ r_i`` for ``linear`` (the SVD is then exact) and
``max r_i`` otherwise: TIES and DARE sparsify the updates, which makes them full rank,
so the truncation keeps the ``max r_i`` strongest directions of the merged update.

peft's own ``LoraModel.add_weighted_adapter`` is not used: its ``linear``, ``ties`` and
``dare_*`` modes merge ``A`` and ``B`` separately (with ``√(w · scaling)`` on each) and
require equal ranks, and its DARE masks draw from the global torch RNG.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from gpu_worker.base_models import BaseModel
from gpu_worker.export import PROVENANCE, artifact_sha256
from services.common.base_model_ref import base_model_ref, parse_base_model_ref

if TYPE_CHECKING:
    import torch

MergeMethod = Literal["linear", "ties", "dare_linear", "dare_ties"]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_A_SUFFIX = ".lora_A.weight"
_B_SUFFIX = ".lora_B.weight"
_PEFT_PREFIX = "base_model.model."
_BASE_MUTATING_INITS = ("pissa", "olora", "corda")
_UNSUPPORTED_FEATURES = {
    "use_dora": "DoRA magnitude vectors", "lora_bias": "LoRA bias terms",
    "modules_to_save": "fully trained modules_to_save", "trainable_token_indices": "trainable tokens",
    "target_parameters": "target_parameters", "layer_replication": "layer replication",
    "alora_invocation_tokens": "activated LoRA (aLoRA)", "use_qalora": "QA-LoRA",
}


@dataclass(frozen=True)
class LoraAdapter:
    """One input adapter: its config and, per target module, its ``(B·A·scaling)`` factors."""

    folder: Path
    config: dict[str, Any]
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module key -> (B·scaling, A)
    dtype: torch.dtype

    @property
    def rank(self) -> int:
        return max(a.shape[0] for _, a in self.factors.values())

    def delta(self, module: str) -> torch.Tensor:
        b, a = self.factors[module]
        return b @ a


def merge_adapters(adapter_dirs: list[Path], weights: list[float], method: MergeMethod, base: BaseModel,
                   dest: Path, *, density: float = 0.5, seed: int = 0) -> str:
    """Merge LoRA adapters of ``base`` into one LoRA adapter folder at ``dest``; return its sha256.

    ``dest`` is replaced. It holds ``adapter_model.safetensors`` + ``adapter_config.json``
    (loadable with ``PeftModel.from_pretrained``), the base's tokenizer, and a provenance
    file listing the inputs (their artifact sha256 and provenance), weights and method.
    """
    dirs = [Path(d) for d in adapter_dirs]
    _check_arguments(dirs, weights, method, density, Path(dest))
    adapters = [_load_adapter(d) for d in dirs]
    _check_compatible(adapters, base)
    rank = sum(a.rank for a in adapters) if method == "linear" else max(a.rank for a in adapters)
    dtype = _common_dtype(adapters)
    tensors: dict[str, torch.Tensor] = {}
    for module in sorted(adapters[0].factors):
        b, a = _merge_module(adapters, module, weights, method, rank, density, seed)
        tensors[module + _A_SUFFIX] = a.to(dtype).contiguous()
        tensors[module + _B_SUFFIX] = b.to(dtype).contiguous()
    return _write(Path(dest), tensors, _merged_config(adapters[0].config, rank, base),
                  _provenance(adapters, weights, method, base, rank, density, seed), base)


def merge_deltas(deltas: list[torch.Tensor], weights: list[float], method: MergeMethod, *,
                 density: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Combine full weight updates of one module with ``method`` (see the module docstring).

    ``generator`` draws the DARE drop masks (one per delta, in order); it is required for
    the ``dare_*`` methods so that a merge is reproducible.
    """
    import torch

    stacked = torch.stack(deltas)
    scale = torch.tensor(weights, dtype=stacked.dtype).view(-1, *([1] * (stacked.dim() - 1)))
    if method == "linear":
        return (stacked * scale).sum(0)
    if method == "ties":
        return disjoint_mean(torch.stack([magnitude_trim(d, density) for d in stacked * scale]))
    if generator is None:
        raise ValueError(f"method {method!r} drops entries at random: pass a seeded torch.Generator")
    dropped = torch.stack([random_drop(d, density, generator) for d in stacked]) * scale
    return dropped.sum(0) if method == "dare_linear" else disjoint_mean(dropped)


def magnitude_trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """TIES trim: keep the ``round(density · n)`` (at least one) entries largest in magnitude."""
    import torch

    flat = delta.flatten()
    keep = torch.topk(flat.abs(), k=max(1, round(density * flat.numel()))).indices
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[keep] = True
    return (flat * mask).view_as(delta)


def random_drop(delta: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: drop each entry with probability ``1 - density``, rescale survivors by ``1 / density``."""
    import torch

    keep = torch.rand(delta.shape, generator=generator, dtype=delta.dtype, device=delta.device) < density
    return delta * keep / density


def disjoint_mean(stacked: torch.Tensor) -> torch.Tensor:
    """TIES elect + disjoint merge over dim 0: mean of the non-zero entries agreeing with the elected sign."""
    import torch

    elected = torch.where(stacked.sum(0) >= 0, 1.0, -1.0).to(stacked.dtype)
    agree = torch.sign(stacked) == elected
    return (stacked * agree).sum(0) / agree.sum(0).clamp(min=1)


def _check_arguments(dirs: list[Path], weights: list[float], method: str, density: float, dest: Path) -> None:
    if not dirs:
        raise ValueError("no adapters to merge: pass at least one adapter folder in adapter_dirs")
    if len(weights) != len(dirs):
        raise ValueError(f"got {len(weights)} weights for {len(dirs)} adapters: pass exactly one weight per "
                         "adapter, in the same order")
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite numbers, got {weights}")
    if method not in get_args(MergeMethod):
        raise ValueError(f"unknown merge method {method!r}: use one of {', '.join(get_args(MergeMethod))}")
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1], got {density}: it is the fraction of each update kept "
                         "(1 keeps everything)")
    if dest.resolve() in {d.resolve() for d in dirs}:
        raise ValueError(f"dest {dest} is one of the adapters being merged: write the merge to a new folder")


def _load_adapter(folder: Path) -> LoraAdapter:
    from safetensors.torch import load_file

    config_path, weights_path = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise ValueError(f"{folder} is not a PEFT adapter folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}): "
                         "pass the folder an adapter was exported to")
    config = json.loads(config_path.read_text())
    _check_plain_lora(folder, config)
    tensors = load_file(weights_path)
    factors = _factors(folder, config, tensors)
    return LoraAdapter(folder, config, factors, next(iter(tensors.values())).dtype)


def _check_plain_lora(folder: Path, config: dict[str, Any]) -> None:
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder} is a {config.get('peft_type')} adapter, not LoRA: only LoRA adapters can be "
                         "merged (prompt tuning and other PEFT methods have no weight update to combine)")
    used = [name for key, name in _UNSUPPORTED_FEATURES.items() if config.get(key)]
    if config.get("bias", "none") != "none":
        used.append(f"trained biases (bias={config['bias']!r})")
    init = config.get("init_lora_weights")
    if isinstance(init, str) and init.lower().startswith(_BASE_MUTATING_INITS):
        used.append(f"init_lora_weights={init!r}, which rewrites the base weights")
    if used:
        raise ValueError(f"{folder} is not a plain LoRA adapter (uses {', '.join(used)}): only plain LoRA "
                         "adapters (B·A updates of the base weights) can be merged")


def _factors(folder: Path, config: dict[str, Any], tensors: dict[str, torch.Tensor],
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    others = sorted(k for k in tensors if not k.endswith((_A_SUFFIX, _B_SUFFIX)))
    if others:
        raise ValueError(f"{folder} holds tensors that are not LoRA A/B matrices ({', '.join(others[:3])}): "
                         "only plain LoRA adapters can be merged")
    factors = {}
    for key in sorted(k for k in tensors if k.endswith(_A_SUFFIX)):
        module = key[: -len(_A_SUFFIX)]
        a, b = tensors[key].double(), tensors.get(module + _B_SUFFIX)
        if b is None or b.dim() != 2 or a.dim() != 2 or b.shape[1] != a.shape[0]:
            raise ValueError(f"{folder}: module {module} has no matching lora_B of rank {a.shape[0]}: "
                             "the adapter file is corrupt, export it again")
        factors[module] = (b.double() * _scaling(config, module, a.shape[0]), a)
    if not factors:
        raise ValueError(f"{folder} has no LoRA weights: export the trained adapter again")
    return factors


def _scaling(config: dict[str, Any], module: str, rank: int) -> float:
    from peft.utils.other import get_pattern_key

    patterns = config.get("alpha_pattern") or {}
    name = module.removeprefix(_PEFT_PREFIX)
    alpha = patterns.get(get_pattern_key(list(patterns), name), config["lora_alpha"])
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


def _check_compatible(adapters: list[LoraAdapter], base: BaseModel) -> None:
    first = adapters[0]
    for adapter in adapters:
        named, digest = parse_base_model_ref(adapter.config.get("base_model_name_or_path"))
        if named != base.model_id or (digest and digest != base.sha256):
            raise ValueError(f"{adapter.folder} was trained on base model {named!r}"
                             f"{f' (sha256 {digest[:12]})' if digest else ''}, not {base.model_id!r} (sha256 "
                             f"{base.sha256[:12]}): merge only adapters trained on the same base model, and pass "
                             "that base")
        if _target_modules(adapter.config) != _target_modules(first.config):
            raise ValueError(f"{adapter.folder} targets modules {_target_modules(adapter.config)} but "
                             f"{first.folder} targets {_target_modules(first.config)}: merge only adapters "
                             "trained with the same target_modules")
        if adapter.factors.keys() != first.factors.keys():
            raise ValueError(f"{adapter.folder} and {first.folder} adapt different layers (layers_to_transform or "
                             "exclude_modules differ): merge only adapters that update the same modules")
        if bool(adapter.config.get("fan_in_fan_out")) != bool(first.config.get("fan_in_fan_out")):
            raise ValueError(f"{adapter.folder} and {first.folder} disagree on fan_in_fan_out: they were not "
                             "trained on the same base model")
    _check_shapes(adapters, _base_weight_shapes(base.path), bool(first.config.get("fan_in_fan_out")), base)


def _target_modules(config: dict[str, Any]) -> str | list[str]:
    targets = config.get("target_modules")
    return targets if isinstance(targets, str) else sorted(targets or [])


def _base_weight_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, framework="pt") as fh:
            shapes.update({key: tuple(fh.get_slice(key).get_shape()) for key in fh.keys()})
    return shapes


def _check_shapes(adapters: list[LoraAdapter], base_shapes: dict[str, tuple[int, ...]], fan_in_fan_out: bool,
                  base: BaseModel) -> None:
    for adapter in adapters:
        for module, (b, a) in adapter.factors.items():
            name = module.removeprefix(_PEFT_PREFIX) + ".weight"
            expected = (a.shape[1], b.shape[0]) if fan_in_fan_out else (b.shape[0], a.shape[1])
            if base_shapes.get(name) != expected:
                raise ValueError(f"{adapter.folder} updates {name} with shape {expected}, but base model "
                                 f"{base.model_id!r} has {base_shapes.get(name, 'no such weight')}: the adapter "
                                 "was trained on a different base model")


def _common_dtype(adapters: list[LoraAdapter]) -> torch.dtype:
    import torch

    dtype = adapters[0].dtype
    for adapter in adapters[1:]:
        dtype = torch.promote_types(dtype, adapter.dtype)
    return dtype


def _merge_module(adapters: list[LoraAdapter], module: str, weights: list[float], method: MergeMethod,
                  rank: int, density: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if method == "linear":
        b = torch.cat([adapter.factors[module][0] * w for adapter, w in zip(adapters, weights)], dim=1)
        a = torch.cat([adapter.factors[module][1] for adapter in adapters], dim=0)
        return _refactorise_product(b, a, rank)
    generator = _module_generator(seed, module) if method.startswith("dare") else None
    merged = merge_deltas([adapter.delta(module) for adapter in adapters], weights, method, density=density,
                          generator=generator)
    return _low_rank(merged, rank)


def _module_generator(seed: int, module: str) -> torch.Generator:
    import torch

    digest = hashlib.sha256(f"{seed}:{module}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "big"))


def _refactorise_product(b: torch.Tensor, a: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """SVD of ``b @ a`` through QR of the thin factors: exact, and never forms the dense product."""
    import torch

    q_b, r_b = torch.linalg.qr(b)
    q_a, r_a = torch.linalg.qr(a.T)
    core_b, core_a = _low_rank(r_b @ r_a.T, rank)
    return q_b @ core_b, core_a @ q_a.T


def _low_rank(delta: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors ``(B, A)`` of ``delta``, singular values split evenly; zero-padded to ``rank``."""
    import torch

    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    k = min(rank, s.numel())
    root = s[:k].sqrt()
    b = torch.zeros(delta.shape[0], rank, dtype=delta.dtype)
    a = torch.zeros(rank, delta.shape[1], dtype=delta.dtype)
    b[:, :k] = u[:, :k] * root
    a[:k] = root[:, None] * vh[:k]
    return b, a


def _merged_config(template: dict[str, Any], rank: int, base: BaseModel) -> dict[str, Any]:
    return template | {
        "r": rank, "lora_alpha": rank, "rank_pattern": {}, "alpha_pattern": {}, "use_rslora": False,
        "init_lora_weights": True, "inference_mode": True, "base_model_name_or_path": base_model_ref(base.model_id, base.sha256),
    }


def _provenance(adapters: list[LoraAdapter], weights: list[float], method: MergeMethod, base: BaseModel,
                rank: int, density: float, seed: int) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "adapter_merge", "method": method, "weights": list(weights), "rank": rank,
        "base_model": base.model_id, "base_model_sha256": base.sha256,
        "sources": [_source(adapter.folder) for adapter in adapters],
    }
    if method != "linear":
        record["density"] = density
    if method.startswith("dare"):
        record["seed"] = seed
    return record


def _source(folder: Path) -> dict[str, Any]:
    provenance = folder / PROVENANCE
    return {"artifact_sha256": artifact_sha256(folder),
            "provenance": json.loads(provenance.read_text()) if provenance.is_file() else None}


def _write(dest: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any], provenance: dict[str, Any],
           base: BaseModel) -> str:
    from safetensors.torch import save_file
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base.path)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    save_file(tensors, dest / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    (dest / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True))
    tokenizer.save_pretrained(dest)
    (dest / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True))
    return artifact_sha256(dest)
