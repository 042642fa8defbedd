"""Model builders per training method: which weights train, and how they are wrapped.

Plain functions in the torchtune spirit: ``build_model(spec, base)`` returns the model
ready to train. Adapter methods wrap the base with PEFT; QLoRA first loads the base
4-bit NF4 with double quantisation (bitsandbytes).

Precision: in ``bf16`` the frozen base weights of adapter methods are stored in bf16
(half the memory, no per-step cast); trained weights (adapters, soft prompts, and every
weight of full fine-tuning, whose fp32 copy is the master) stay fp32 and the forward runs
under bf16 autocast.
"""

from __future__ import annotations

from typing import Any

from gpu_worker.base_models import BaseModel
from services.common.training_spec import ADAPTER_METHODS, TrainingSpec, peft_target_modules


def load_base(base: BaseModel, quantized: bool = False, dtype: Any = None, device: Any = None,
              attn_implementation: str | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        if device is not None and device.type == "cuda":
            kwargs["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    if device is not None and not quantized:
        model.to(device)
    return model


def packed_attention(spec: TrainingSpec, device: Any) -> str | None:
    """The attention kernel for packed rows: FlexAttention on GPUs, else the model's default.

    On a GPU, packed rows go without a dense mask: transformers reads the example
    boundaries from the restarting position ids and builds a FlexAttention block mask, so
    blocks across examples are skipped instead of computed and masked (what varlen
    FlashAttention does). FlexAttention has no backward on CPU, where packed rows keep the
    4-D block-diagonal mask with SDPA.
    """
    if not spec.packing or device is None or device.type != "cuda":
        return None
    import torch

    # FlexAttention's Triton kernels target Ampere and later; older GPUs keep the dense mask
    return "flex_attention" if torch.cuda.get_device_capability(device) >= (8, 0) else None


def build_model(spec: TrainingSpec, base: BaseModel, precision: str = "fp32", device: Any = None) -> Any:
    """The model for ``spec.method`` with exactly the trainable weights that method trains."""
    import torch
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    frozen_dtype = torch.bfloat16 if precision == "bf16" and spec.method != "full" else torch.float32
    model = load_base(base, quantized=spec.method == "qlora", dtype=frozen_dtype, device=device,
                      attn_implementation=packed_attention(spec, device))
    model.config.use_cache = False
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if spec.method in ADAPTER_METHODS:
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=spec.lora.r, lora_alpha=spec.lora.alpha,
                            lora_dropout=spec.lora.dropout,
                            target_modules=peft_target_modules(spec.lora.target_modules),
                            bias="none")
        model = get_peft_model(model, config)
    elif spec.method == "prompt_tuning":
        model = get_peft_model(model, PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM))
    else:  # full fine-tuning
        for p in model.parameters():
            p.requires_grad_(True)
    for p in model.parameters():  # optimizer state and updates in fp32 whatever the frozen weights are
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return model


def trainable_state(model: Any) -> dict[str, Any]:
    """Trainable tensors by name (adapter, soft prompt, or every weight for full tuning)."""
    return {name: p.detach().clone().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: Any, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    missing = [name for name, p in params.items() if p.requires_grad and name not in state]
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} trainable tensors (e.g. {missing[0]}): "
                         "it belongs to a different method or model")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)
