"""How an exported adapter names its base model: the model store's id and the weights' sha256.

PEFT reads ``base_model_name_or_path`` from ``adapter_config.json``. A bare model id there
(``smollm2-135m-instruct``) looks like a Hugging Face Hub repository, so PEFT goes to the
network with it (saving a model loaded with the adapter checks the hub for the base's
config; ``AutoPeftModelForCausalLM`` downloads the base), which inside a trust boundary
hangs until a timeout or leaks the model name. ``privtune-model-store:<id>@sha256:<hex>``
is not a valid hub repository id: huggingface_hub refuses it locally, before any request,
and the id plus the hash say exactly which weights the adapter was trained on. Load the
base from the model store yourself and pass it to ``PeftModel.from_pretrained``.
"""

from __future__ import annotations

PREFIX = "privtune-model-store:"


def base_model_ref(model_id: str, sha256: str) -> str:
    return f"{PREFIX}{model_id}@sha256:{sha256}"


def parse_base_model_ref(value: str | None) -> tuple[str, str]:
    """``(model id, sha256)`` from a reference; a bare id (older artifacts) gives ``(id, "")``."""
    text = str(value or "")
    if not text.startswith(PREFIX):
        return text, ""
    model_id, _, digest = text[len(PREFIX):].partition("@sha256:")
    return model_id, digest
