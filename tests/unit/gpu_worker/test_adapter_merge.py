"""Multi-adapter fusion: exactness of linear merges, TIES/DARE maths, determinism, input checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gpu_worker.adapter_merge import merge_adapters, merge_deltas
from gpu_worker.base_models import BaseModel, build_tiny_model
from gpu_worker.methods import load_base

pytestmark = pytest.mark.unit

torch = pytest.importorskip("torch")
INPUT_IDS = torch.tensor([[1, 72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100]])
PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True)
class Setup:
    base: BaseModel
    other_base: BaseModel
    adapters: dict[str, Path]
    root: Path


def _save_lora(base: BaseModel, dest: Path, *, seed: int, r: int, alpha: int, targets: list[str],
               use_rslora: bool = False, model_id: str | None = None) -> Path:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, target_modules=targets, use_rslora=use_rslora, lora_dropout=0.0)
    model = get_peft_model(load_base(base), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    model.save_pretrained(dest)
    _edit_config(dest, base_model_name_or_path=model_id or base.model_id)
    return dest


def _edit_config(folder: Path, **changes: Any) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("merge")
    base = build_tiny_model(root / "models")
    other = build_tiny_model(root / "models", "tiny-narrow", hidden_size=32, heads=2)
    qv = ["q_proj", "v_proj"]
    adapters = {
        "a": _save_lora(base, root / "a", seed=1, r=4, alpha=8, targets=qv),
        "b": _save_lora(base, root / "b", seed=2, r=2, alpha=3, targets=qv),
        "rslora": _save_lora(base, root / "rslora", seed=3, r=4, alpha=6, targets=qv, use_rslora=True),
        "q_only": _save_lora(base, root / "q_only", seed=4, r=4, alpha=8, targets=["q_proj"]),
        "narrow": _save_lora(other, root / "narrow", seed=5, r=4, alpha=8, targets=qv, model_id=base.model_id),
    }
    return Setup(base, other, adapters, root)


def _deltas(folder: Path) -> dict[str, torch.Tensor]:
    """``{base weight name: B·A·scaling}`` read straight from the adapter files."""
    import math

    from safetensors.torch import load_file

    config = json.loads((folder / "adapter_config.json").read_text())
    tensors = load_file(folder / "adapter_model.safetensors")
    deltas = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            module = key.removesuffix(".lora_A.weight")
            b = tensors[module + ".lora_B.weight"]
            r = a.shape[0]
            scaling = config["lora_alpha"] / (math.sqrt(r) if config["use_rslora"] else r)
            deltas[module.removeprefix(PEFT_PREFIX) + ".weight"] = (b.double() @ a.double()) * scaling
    return deltas


def _logits_with_adapter(base: BaseModel, adapter: Path) -> torch.Tensor:
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base(base), adapter).eval()
    with torch.no_grad():
        return model(INPUT_IDS).logits


def _logits_with_deltas(base: BaseModel, deltas: dict[str, torch.Tensor]) -> torch.Tensor:
    model = load_base(base).eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, delta in deltas.items():
            params[name].add_(delta.float())
        return model(INPUT_IDS).logits


def _base_logits(base: BaseModel) -> torch.Tensor:
    with torch.no_grad():
        return load_base(base).eval()(INPUT_IDS).logits


def _weights_sha(folder: Path) -> str:
    from services.common.hashing import file_sha256

    return file_sha256(folder / "adapter_model.safetensors")


@pytest.mark.parametrize("name", ["a", "rslora"])
def test_linear_merge_of_one_adapter_reproduces_it(setup: Setup, tmp_path: Path, name: str) -> None:
    merge_adapters([setup.adapters[name]], [1.0], "linear", setup.base, tmp_path / "m")
    expected = _logits_with_adapter(setup.base, setup.adapters[name])
    assert not torch.allclose(expected, _base_logits(setup.base), atol=1e-3)
    assert torch.allclose(_logits_with_adapter(setup.base, tmp_path / "m"), expected, atol=1e-4)


def test_linear_merge_is_the_weighted_sum_of_deltas(setup: Setup, tmp_path: Path) -> None:
    a, b = _deltas(setup.adapters["a"]), _deltas(setup.adapters["b"])
    expected = {name: 0.7 * a[name] - 0.4 * b[name] for name in a}
    sha = merge_adapters([setup.adapters["a"], setup.adapters["b"]], [0.7, -0.4], "linear", setup.base,
                         tmp_path / "m")
    config = json.loads((tmp_path / "m" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (6, 6)
    assert config["base_model_name_or_path"] == f"privtune-model-store:tiny-llama@sha256:{setup.base.sha256}"
    merged = _deltas(tmp_path / "m")
    assert merged.keys() == expected.keys()
    for name, delta in expected.items():
        assert torch.allclose(merged[name], delta, atol=1e-5), name
    assert torch.allclose(_logits_with_adapter(setup.base, tmp_path / "m"),
                          _logits_with_deltas(setup.base, expected), atol=1e-4)
    provenance = json.loads((tmp_path / "m" / "privtune-artifact.json").read_text())
    assert provenance["method"] == "linear" and provenance["weights"] == [0.7, -0.4]
    assert len(provenance["sources"]) == 2 and "seed" not in provenance
    assert len(sha) == 64


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties"])
def test_ties_and_dare_give_a_loadable_deterministic_adapter(setup: Setup, tmp_path: Path, method: str) -> None:
    dirs = [setup.adapters["a"], setup.adapters["b"], setup.adapters["rslora"]]
    first = merge_adapters(dirs, [1.0, 0.5, 0.8], method, setup.base, tmp_path / "one", density=0.4, seed=7)
    again = merge_adapters(dirs, [1.0, 0.5, 0.8], method, setup.base, tmp_path / "two", density=0.4, seed=7)
    assert first == again
    assert json.loads((tmp_path / "one" / "adapter_config.json").read_text())["r"] == 4
    logits = _logits_with_adapter(setup.base, tmp_path / "one")
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits, _base_logits(setup.base), atol=1e-3)
    reseeded = merge_adapters(dirs, [1.0, 0.5, 0.8], method, setup.base, tmp_path / "three", density=0.4, seed=8)
    if method == "ties":
        assert _weights_sha(tmp_path / "three") == _weights_sha(tmp_path / "one") and reseeded == first
    else:
        assert _weights_sha(tmp_path / "three") != _weights_sha(tmp_path / "one") and reseeded != first


def test_ties_trims_elects_sign_and_takes_the_disjoint_mean() -> None:
    d1 = torch.tensor([[3.0, -1.0, 0.5, 2.0]])
    d2 = torch.tensor([[-2.0, -2.0, 1.0, -0.1]])
    # trimmed to half: d1 -> [3, 0, 0, 2], d2 -> [-2, -2, 0, 0]; elected signs [+, -, +, +]
    merged = merge_deltas([d1, d2], [1.0, 1.0], "ties", density=0.5)
    assert torch.equal(merged, torch.tensor([[3.0, -2.0, 0.0, 2.0]]))
    # weights enter before the election: doubling d2 flips entry 0 to d2's sign
    merged = merge_deltas([d1, d2], [1.0, 2.0], "ties", density=0.5)
    assert torch.equal(merged, torch.tensor([[-4.0, -4.0, 0.0, 2.0]]))
    agreeing = merge_deltas([d1, d1 * 3], [1.0, 1.0], "ties", density=1.0)
    assert torch.allclose(agreeing, d1 * 2)


def test_dare_drops_at_rate_one_minus_density_and_rescales() -> None:
    ones = torch.ones(100, 100)
    dropped = merge_deltas([ones], [1.0], "dare_linear", density=0.25, generator=torch.Generator().manual_seed(0))
    assert set(dropped.unique().tolist()) == {0.0, 4.0}
    assert abs(dropped.mean().item() - 1.0) < 0.1
    full = merge_deltas([ones, 2 * ones], [1.0, -1.0], "dare_linear", density=1.0,
                        generator=torch.Generator().manual_seed(0))
    assert torch.equal(full, -ones)
    with pytest.raises(ValueError, match="seeded torch.Generator"):
        merge_deltas([ones], [1.0], "dare_ties", density=0.5)


def _copy_with_config(src: Path, dest: Path, **changes: Any) -> Path:
    shutil.copytree(src, dest)
    _edit_config(dest, **changes)
    return dest


def _prompt_tuning_adapter(base: BaseModel, dest: Path) -> Path:
    from peft import PromptTuningConfig, TaskType, get_peft_model

    model = get_peft_model(load_base(base), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=2))
    model.save_pretrained(dest)
    return dest


def test_invalid_inputs_are_rejected_with_the_fix(setup: Setup, tmp_path: Path) -> None:
    a, b = setup.adapters["a"], setup.adapters["b"]
    cases: list[tuple[list[Path], list[float], str, dict[str, Any], str]] = [
        ([], [], "linear", {}, "no adapters to merge"),
        ([a, b], [1.0], "linear", {}, "got 1 weights for 2 adapters"),
        ([a], [float("nan")], "linear", {}, "weights must be finite"),
        ([a, b], [1.0, 1.0], "slerp", {}, "unknown merge method 'slerp'"),
        ([a, b], [1.0, 1.0], "ties", {"density": 0.0}, r"density must be in \(0, 1\], got 0.0"),
        ([a, b], [1.0, 1.0], "dare_ties", {"density": 1.5}, r"density must be in \(0, 1\], got 1.5"),
        ([a, _copy_with_config(b, tmp_path / "elsewhere", base_model_name_or_path="smollm2-135m-instruct")],
         [1.0, 1.0], "linear", {}, "trained on base model 'smollm2-135m-instruct', not 'tiny-llama'"),
        ([a, setup.adapters["q_only"]], [1.0, 1.0], "ties", {}, "merge only adapters trained with the same "
                                                                "target_modules"),
        ([a, _prompt_tuning_adapter(setup.base, tmp_path / "prompt")], [1.0, 1.0], "linear", {},
         "is a PROMPT_TUNING adapter, not LoRA"),
        ([a, _copy_with_config(b, tmp_path / "dora", use_dora=True)], [1.0, 1.0], "linear", {},
         "not a plain LoRA adapter \\(uses DoRA"),
        ([a, setup.adapters["narrow"]], [1.0, 1.0], "linear", {}, "trained on a different base model"),
        ([a, tmp_path], [1.0, 1.0], "linear", {}, "is not a PEFT adapter folder"),
    ]
    for dirs, weights, method, kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            merge_adapters(dirs, weights, method, setup.base, tmp_path / "out", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is one of the adapters being merged"):
        merge_adapters([a, b], [1.0, 1.0], "linear", setup.base, a)
    assert not (tmp_path / "out").exists()
