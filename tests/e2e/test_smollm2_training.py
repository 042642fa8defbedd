"""The real base model: SmolLM2-135M-Instruct imported from its PyPI package and tuned with LoRA."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import warnings
from pathlib import Path

import pytest

from gpu_worker.base_models import SMOLLM2_ID, import_smollm2, resolve
from gpu_worker.job import run_job
from tests.training_fixtures import completed, events_of, make_dataset, run_to_end, start_job_process, tiny_spec

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


def _weights(work: Path) -> str:
    return hashlib.sha256((work / "artifact" / "adapter_model.safetensors").read_bytes()).hexdigest()


def test_a_run_started_with_two_threads_resumes_with_two_in_a_process_that_defaults_to_one(tmp_path: Path) -> None:
    """The thread count is pinned at first start and recorded in the checkpoints a resume reads.

    On SmolLM2 one thread and two usually round differently (the weights differ; the tiny test
    models are too small for torch to split their reductions), so a resume that took its own
    process's default would not end with the uninterrupted run's weights. Not on every CPU: where
    they round alike (seen once on these machines), the weights cannot tell the counts apart, and
    the thread count the resume reports and records carries the test (a warning says so).
    """
    import_smollm2(MODELS)
    storage_root = f"file://{tmp_path}/tenants"
    uri = make_dataset(storage_root, n=16, holdout=4)
    steps = dict(base_model=SMOLLM2_ID, max_steps=4, checkpoint_every=2, keep_last_checkpoints=100,
                 micro_batch_size=4, max_seq_length=64, learning_rate=1e-3)
    two, one = {"OMP_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "1"}
    rc, events = run_to_end(tiny_spec(uri, job_id="threads-2", **steps), MODELS, storage_root, tmp_path / "t2", two)
    assert rc == 0 and next(e for e in events if e["kind"] == "started")["torch_threads"] == 2
    reference, reference_weights = completed(events)["artifact_sha256"], _weights(tmp_path / "t2")
    rc, _ = run_to_end(tiny_spec(uri, job_id="threads-1", **steps), MODELS, storage_root, tmp_path / "t1", one)
    assert rc == 0
    if _weights(tmp_path / "t1") == reference_weights:
        warnings.warn("one torch thread and two gave the same SmolLM2 weights on this machine: the resumed run's "
                      "weights cannot show which count it used; its reported and recorded count still do")

    spec = tiny_spec(uri, job_id="threads-moved", **steps)
    process = start_job_process(spec, MODELS, storage_root, tmp_path / "moved", two)
    for event in events_of(process):
        if event["kind"] == "progress" and event["step"] == 3:
            process.send_signal(signal.SIGKILL)
            break
    assert process.wait(timeout=120) == -signal.SIGKILL
    rc, events = run_to_end(spec, MODELS, storage_root, tmp_path / "moved", one)
    started = next(e for e in events if e["kind"] == "started")
    assert started["resumed_from_checkpoint_id"] and started["torch_threads"] == 2
    assert "2 torch threads" in started["bitwise_reproducible"]
    assert rc == 0 and completed(events)["artifact_sha256"] == reference
    assert _weights(tmp_path / "moved") == reference_weights
    provenance = json.loads((tmp_path / "moved" / "artifact" / "privtune-artifact.json").read_text())
    assert provenance["torch_threads"] == 2 and provenance["precision"] == "fp32"
