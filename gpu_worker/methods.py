"""Model builders per training method: which weights train, and how they are wrapped.

Plain functions in the torchtune spirit: ``build_model(spec, base)`` returns the model
ready to train. Adapter methods wrap the base with PEFT; QLoRA first loads the base
4-bit NF4 with double quantisation (bitsandbytes).
"""

from __future__ import annotations

from typing import Any

from gpu_worker.base_models import BaseModel
from services.common.training_spec import ADAPTER_METHODS, TrainingSpec


def load_base(base: BaseModel, quantized: bool = False) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if quantized:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(base.path, **kwargs)


def build_model(spec: TrainingSpec, base: BaseModel) -> Any:
    """The model for ``spec.method`` with exactly the trainable weights that method trains."""
    from peft import LoraConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    model = load_base(base, quantized=spec.method == "qlora")
    model.config.use_cache = False
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if spec.method in ADAPTER_METHODS:
        config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=spec.lora.r, lora_alpha=spec.lora.alpha,
                            lora_dropout=spec.lora.dropout, target_modules=list(spec.lora.target_modules),
                            bias="none")
        model = get_peft_model(model, config)
    elif spec.method == "prompt_tuning":
        model = get_peft_model(model, PromptTuningConfig(
            task_type=TaskType.CAUSAL_LM, num_virtual_tokens=spec.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.RANDOM))
    else:  # full fine-tuning
        for p in model.parameters():
            p.requires_grad_(True)
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
