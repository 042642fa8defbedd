"""Memory, steps, tokens, GPU-hours and cost estimates: hand-checkable cases and checks against torch/PEFT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.common.training_spec import TrainingSpec
from privtune.v1 import events_pb2
from services.orchestrator.estimate import (NF4_BYTES_PER_PARAM, Estimate, activation_bytes, estimate,
                                            fitting_methods, model_info_from_config, total_steps,
                                            trainable_parameters)
from services.orchestrator.gpu_types import GPU_TYPES, cpu_type, gpu_type
from services.orchestrator.resources import GIB, DatasetInfo, ModelInfo

pytestmark = pytest.mark.unit

LLAMA2_7B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "intermediate_size": 11008, "vocab_size": 32000, "tie_word_embeddings": False}
SMOLLM2_135M = {"hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "intermediate_size": 1536, "vocab_size": 49152, "tie_word_embeddings": True}
DATASET = DatasetInfo("v1", "ds", 0, train_records=10_000, mean_tokens_per_record=400.0)


def spec(method: str = "lora", **overrides: Any) -> TrainingSpec:
    body: dict[str, Any] = {"job_id": "j", "tenant_id": "t", "method": method, "base_model": "m",
                            "dataset_uri": "file:///d", "micro_batch_size": 4, "max_seq_length": 512}
    return TrainingSpec.model_validate({**body, **overrides})


def llama7b() -> ModelInfo:
    return model_info_from_config("llama-2-7b", LLAMA2_7B)


# ------------------------------------------------------------------ architecture


def test_parameter_count_of_known_configs() -> None:
    assert llama7b().parameters == 6_738_415_616  # Llama-2-7B as published
    assert model_info_from_config("smollm2", SMOLLM2_135M).parameters == 134_515_008


def test_parameter_count_equals_torch_for_tiny_and_smollm2_configs(tmp_path: Path) -> None:
    import json

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from gpu_worker.base_models import build_tiny_model

    tiny = build_tiny_model(tmp_path, hidden_size=64, layers=2, heads=4)
    model = AutoModelForCausalLM.from_pretrained(tiny.path)
    config = json.loads((tiny.path / "config.json").read_text())
    assert model_info_from_config("tiny", config).parameters == sum(p.numel() for p in model.parameters())
    with torch.device("meta"):
        smol = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    assert model_info_from_config("smollm2", SMOLLM2_135M).parameters == sum(p.numel() for p in smol.parameters())


def test_a_config_that_is_not_llama_style_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'gpt2'.*'hidden_size'"):
        model_info_from_config("gpt2", {"n_embd": 768})


@pytest.mark.parametrize("targets,r", [(["q_proj", "k_proj", "v_proj", "o_proj"], 8), (["all-linear"], 16)])
def test_lora_trainable_parameters_equal_what_peft_reports(targets: list[str], r: int, tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    from gpu_worker.base_models import build_tiny_model

    tiny = build_tiny_model(tmp_path, hidden_size=64, layers=2, heads=4)
    gqa = {"hidden_size": 96, "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 2,
           "intermediate_size": 160, "vocab_size": 300, "tie_word_embeddings": False}
    models = ((AutoModelForCausalLM.from_pretrained(tiny.path), None), (LlamaForCausalLM(LlamaConfig(**gqa)), gqa))
    for model, config in models:
        info = model_info_from_config("m", config or model.config.to_dict())
        peft_targets = "all-linear" if targets == ["all-linear"] else targets
        peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=peft_targets))
        trainable, _ = peft_model.get_nb_trainable_parameters()
        assert trainable_parameters(info, spec("lora", lora={"r": r, "target_modules": targets})) == trainable


LINEARS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.mark.parametrize("targets,expected", [
    (["all-linear"], "all-linear"),
    (["model.layers.all-linear"], "all-linear"),
    (["all-linear", "lm_head"], [*LINEARS, "lm_head"]),
    (["q_proj", "all-linear"], LINEARS),
    (["q_proj", "v_proj"], ["q_proj", "v_proj"]),
    ([], []),
])
def test_peft_gets_all_linear_as_the_string_it_expands_or_as_the_names_the_estimate_sized(
        targets: list[str], expected: object) -> None:
    from services.common.training_spec import peft_target_modules

    assert peft_target_modules(targets) == expected


def test_prompt_tuning_trains_virtual_tokens_times_hidden() -> None:
    assert trainable_parameters(llama7b(), spec("prompt_tuning", num_virtual_tokens=20)) == 20 * 4096


def test_an_unknown_lora_target_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'attn'.*q_proj"):
        trainable_parameters(llama7b(), spec("lora", lora={"target_modules": ["attn"]}))


# ------------------------------------------------------------------ memory


def test_7b_full_fine_tuning_does_not_fit_one_80gb_gpu_but_qlora_does() -> None:
    a100 = gpu_type("a100-80gb")
    full = estimate(llama7b(), spec("full"), DATASET, a100)
    qlora = estimate(llama7b(), spec("qlora"), DATASET, a100)
    assert not full.fits and full.peak_memory_bytes > 100 * GIB  # ~16 bytes a parameter before activations
    # fp32 weights (the master copy) plus the bf16 copy autocast keeps, fp32 gradients, two AdamW moments
    assert full.weights_bytes == 6 * llama7b().parameters and full.gradient_bytes == 4 * llama7b().parameters
    assert full.optimizer_bytes == 8 * llama7b().parameters
    assert qlora.fits and qlora.weights_bytes < 5 * GIB
    assert fitting_methods(llama7b(), spec("full"), DATASET, a100) == ("lora", "qlora")
    assert fitting_methods(llama7b(), spec("full"), DATASET, gpu_type("t4-16gb")) == ()


def test_qlora_stores_block_linears_as_nf4_and_the_rest_in_fp32() -> None:
    model = llama7b()
    linears = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    rest = model.parameters - linears
    weights = estimate(model, spec("qlora"), DATASET, gpu_type("a100-80gb")).weights_bytes
    assert weights == pytest.approx(linears * NF4_BYTES_PER_PARAM + rest * 4, rel=1e-4)


def test_nf4_bytes_per_parameter_match_bitsandbytes() -> None:
    pytest.importorskip("bitsandbytes")
    import torch
    from bitsandbytes.functional import quantize_4bit

    weight = torch.randn(512, 1024)
    packed, state = quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=True)
    stored = (packed.numel() * packed.element_size() + state.absmax.numel() * state.absmax.element_size()
              + state.state2.absmax.numel() * state.state2.absmax.element_size())
    assert stored / weight.numel() == pytest.approx(NF4_BYTES_PER_PARAM, rel=1e-6)


def test_doubling_the_micro_batch_doubles_activations() -> None:
    cpu = cpu_type()
    one = activation_bytes(llama7b(), spec("lora", micro_batch_size=4), cpu)
    two = activation_bytes(llama7b(), spec("lora", micro_batch_size=8), cpu)
    assert two == pytest.approx(2 * one, rel=0.01)


def test_eager_attention_adds_the_attention_probabilities() -> None:
    cpu, job = cpu_type(), spec("lora", micro_batch_size=2, max_seq_length=1024)
    model = llama7b()
    extra = (activation_bytes(model, job, cpu, flash_attention=False)
             - activation_bytes(model, job, cpu, flash_attention=True))
    # per block: fp32 softmax output (heads x s per token) replaces the output tensor and log-sum-exp
    tokens = 2 * 1024
    assert extra == 32 * tokens * (32 * 1024 * 4 - 4 * 32)


def test_block_activations_equal_the_tensors_autograd_saves() -> None:
    """The per-block formula against ``saved_tensors_hooks`` on a real Hugging Face Llama (fp32, SDPA)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    rows, seq = 2, 64
    config = {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256,
              "vocab_size": 300, "tie_word_embeddings": True}

    def saved_bytes(layers: int, method: str) -> int:
        torch.manual_seed(0)
        model: Any = LlamaForCausalLM(LlamaConfig(num_hidden_layers=layers, **config))
        if method == "lora":
            model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj", "down_proj"]))
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, int] = {}

        def pack(t: Any) -> Any:
            if t.untyped_storage().data_ptr() not in params:
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        ids = torch.randint(0, 300, (rows, seq))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
        return sum(storages.values())

    cpu = cpu_type()
    for method in ("full", "lora"):
        job = spec(method, micro_batch_size=rows, max_seq_length=seq,
                   lora={"r": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]})
        per_block = [activation_bytes(model_info_from_config("m", {"num_hidden_layers": n, **config}), job, cpu)
                     for n in (2, 4)]
        padding_masks = 2 * rows * seq * seq * 4  # assumed by the estimate; this batch has no padding
        assert per_block[1] - per_block[0] - padding_masks == saved_bytes(4, method) - saved_bytes(2, method)


def test_dp_sgd_keeps_a_gradient_per_example() -> None:
    cpu = cpu_type()
    plain = estimate(llama7b(), spec("lora", micro_batch_size=4), DATASET, cpu)
    private = estimate(llama7b(), spec("lora", micro_batch_size=4, dp={"enabled": True}), DATASET, cpu)
    assert private.gradient_bytes - plain.gradient_bytes == 5 * plain.trainable_parameters * 4


def test_dpo_runs_chosen_and_rejected_sequences() -> None:
    cpu = cpu_type()
    sft = estimate(llama7b(), spec("lora"), DATASET, cpu)
    dpo = estimate(llama7b(), spec("dpo"), DATASET, cpu)
    assert dpo.tokens == 2 * sft.tokens
    assert dpo.activation_bytes == pytest.approx(2 * sft.activation_bytes, rel=0.01)
    assert dpo.weights_bytes == sft.weights_bytes  # the reference is the base with the adapter off


def test_data_parallel_memory_is_per_device_and_gpu_hours_are_shared() -> None:
    a100 = gpu_type("a100-80gb")
    one = estimate(llama7b(), spec("lora"), DATASET, a100)
    four = estimate(llama7b(), spec("lora", num_processes=4), DATASET, a100)
    assert four.peak_memory_bytes == one.peak_memory_bytes
    assert four.gpu_hours == pytest.approx(one.gpu_hours)
    assert four.total_steps == 10_000 // 16 and one.total_steps == 10_000 // 4


# ------------------------------------------------------------------ steps, tokens, hours, cost


def test_steps_and_tokens_follow_the_dataset_or_max_steps() -> None:
    data = DatasetInfo("v1", "ds", 0, train_records=100, mean_tokens_per_record=300.0)
    job = spec("lora", epochs=2, micro_batch_size=4, gradient_accumulation_steps=2, max_seq_length=256)
    assert total_steps(job, data) == 2 * 13  # ceil(100 / 8) per epoch
    assert estimate(llama7b(), job, data, cpu_type()).tokens == 2 * 100 * 256  # records capped at max_seq_length
    capped = spec("lora", max_steps=5, micro_batch_size=4, gradient_accumulation_steps=2, max_seq_length=256)
    assert estimate(llama7b(), capped, data, cpu_type()).tokens == 5 * 8 * 256
    assert total_steps(spec("lora", packing=True, micro_batch_size=1, max_seq_length=600), data) == 50


def test_more_tokens_cost_proportionally_more_gpu_hours() -> None:
    h100 = gpu_type("h100-80gb")
    small = estimate(llama7b(), spec("lora"), DATASET, h100)
    big = estimate(llama7b(), spec("lora"), DatasetInfo("v2", "ds", 0, train_records=30_000,
                                                       mean_tokens_per_record=400.0), h100)
    assert big.tokens == 3 * small.tokens
    assert big.gpu_hours == pytest.approx(3 * small.gpu_hours)
    assert big.cost_usd == pytest.approx(big.gpu_hours * h100.price_per_hour_usd)


def test_full_fine_tuning_costs_about_6_flops_per_parameter_and_token_adapters_about_4() -> None:
    h100 = gpu_type("h100-80gb")
    full = estimate(llama7b(), spec("full"), DATASET, h100)
    lora = estimate(llama7b(), spec("lora"), DATASET, h100)
    n = llama7b().parameters - 32000 * 4096  # the untied input embedding is a lookup
    assert full.flops == pytest.approx(6 * n * full.tokens, rel=0.1)
    assert lora.flops / full.flops == pytest.approx(4 / 6, rel=0.05)
    assert full.gpu_hours == pytest.approx(full.flops / (989e12 * 0.4) / 3600)


# ------------------------------------------------------------------ GPU types and proto


def test_unknown_gpu_type_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="'v100'.*a100-80gb.*h200-141gb"):
        gpu_type("v100")
    assert cpu_type(8 * GIB).memory_bytes == 8 * GIB and gpu_type("cpu").compute_dtype_bytes == 4
    assert all(t.peak_tflops > 0 and t.memory_bytes > 0 for t in GPU_TYPES.values())


def test_estimate_round_trips_through_its_proto() -> None:
    sized = estimate(llama7b(), spec("qlora"), DATASET, gpu_type("l4-24gb"))
    proto = sized.to_proto()
    assert isinstance(proto, events_pb2.ResourceEstimate)
    assert proto.peak_memory_bytes == sized.peak_memory_bytes and proto.gpu_type == "l4-24gb"
    back = Estimate.from_proto(proto)
    assert (back.peak_memory_bytes, back.tokens, back.fits, back.total_steps) == \
        (sized.peak_memory_bytes, sized.tokens, sized.fits, sized.total_steps)


def test_the_estimate_follows_the_precision_the_worker_uses() -> None:
    from services.orchestrator.estimate import compute_bytes

    a100, cpu = gpu_type("a100-80gb"), gpu_type("cpu")
    assert compute_bytes(spec("lora"), a100) == 2 and compute_bytes(spec("lora"), cpu) == 4  # auto
    assert compute_bytes(spec("lora", precision="fp32"), a100) == 4
    assert compute_bytes(spec("lora", precision="bf16"), cpu) == 2
    bf16 = estimate(llama7b(), spec("lora", precision="bf16"), DATASET, cpu)
    fp32 = estimate(llama7b(), spec("lora", precision="fp32"), DATASET, cpu)
    assert bf16.weights_bytes * 2 == fp32.weights_bytes  # the frozen base is stored in bf16
    assert bf16.activation_bytes < fp32.activation_bytes
    assert bf16.trainable_bytes == fp32.trainable_bytes  # adapters stay fp32
    # on a GPU, an fp32 job (explicitly, or DP-SGD under auto) runs at the fp32 peak: ~15x the hours on an H100
    h100 = gpu_type("h100-80gb")
    fast = estimate(llama7b(), spec("lora"), DATASET, h100)
    for slow_spec in (spec("lora", precision="fp32"), spec("lora", dp={"enabled": True})):
        slow = estimate(llama7b(), slow_spec, DATASET, h100)
        assert slow.gpu_hours == pytest.approx(fast.gpu_hours * 989.0 / 67.0)


def test_the_loss_head_never_holds_positions_times_vocabulary_logits() -> None:
    import dataclasses

    from services.orchestrator.estimate import LOSS_CHUNK_ELEMENTS, activation_bytes

    model, job, cpu = llama7b(), spec("lora", max_seq_length=1024), gpu_type("cpu")
    bigger = dataclasses.replace(model, vocab_size=8 * model.vocab_size)
    grown = activation_bytes(bigger, job, cpu) - activation_bytes(model, job, cpu)
    # 4 rows x 1024 positions x 224,000 more fp32 logits would be 3.7 GB; one chunk is at most 64 MiB
    assert abs(grown) <= 2 * 4 * LOSS_CHUNK_ELEMENTS
