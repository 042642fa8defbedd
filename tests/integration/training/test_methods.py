"""Every method really trains a tiny model: held-out loss falls, artifacts load, DP accounts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpu_worker import checkpoint as ckpt
from gpu_worker.base_models import resolve
from gpu_worker.job import run_job
from services.common.training_spec import METHODS
from tests.training_fixtures import make_dataset, make_models, tiny_spec

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def storage_root(tmp_path: Path) -> str:
    return f"file://{tmp_path}/tenants"


def _run(spec: Any, models: Path, storage_root: str, work: Path) -> tuple[int, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    rc = run_job(spec, models, storage_root, work, lambda kind, payload: events.append({"kind": kind, **payload}))
    return rc, events


def _completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    done = [e for e in events if e["kind"] == "completed"]
    assert done, [e for e in events if e["kind"] == "failed"]
    return done[0]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_lowers_held_out_loss(method: str, models: Path, storage_root: str, tmp_path: Path) -> None:
    spec = tiny_spec(make_dataset(storage_root, method), method)
    rc, events = _run(spec, models, storage_root, tmp_path / "work")
    done = _completed(events)
    assert rc == 0
    assert done["eval_loss"] < 0.95 * done["initial_eval_loss"], done
    started = next(e for e in events if e["kind"] == "started")
    assert started["base_model_sha256"] == resolve(models, "tiny-llama").sha256
    assert len(started["dataset_manifest_sha256"]) == 64 and started["seed"] == 7
    assert {"torch", "transformers", "peft"} <= set(started["library_versions"])
    saved = [e for e in events if e["kind"] == "checkpoint"]
    assert [e["step"] for e in saved] == [10, 20, 30] and all(e["uri"].startswith("file://") for e in saved)


def test_qlora_trains_adapters_on_a_4bit_nf4_base(models: Path) -> None:
    import bitsandbytes as bnb

    from gpu_worker.methods import build_model

    model = build_model(tiny_spec("file:///unused", "qlora"), resolve(models, "tiny-llama"))
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    assert all(m.weight.quant_state.nested for m in quantized)  # double quantisation
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


@pytest.mark.parametrize("targets,extra", [(["all-linear"], set()), (["all-linear", "lm_head"], {"lm_head"})])
def test_all_linear_adapts_every_linear_of_each_block_as_the_estimate_sizes_it(
        targets: list[str], extra: set[str], models: Path) -> None:
    """PEFT takes ``all-linear`` only as a whole string; a spec's target list holding it must still train
    what admission sized (``estimate.trainable_parameters``), with a real forward and backward pass."""
    import torch

    from gpu_worker.methods import build_model
    from services.common.training_spec import LAYER_LINEARS
    from services.orchestrator.catalog import model_info
    from services.orchestrator.estimate import trainable_parameters

    spec = tiny_spec("file:///unused", "lora", lora={"r": 4, "target_modules": targets})
    model = build_model(spec, resolve(models, "tiny-llama"))
    adapted = {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert adapted == set(LAYER_LINEARS) | extra
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == trainable_parameters(model_info(models, "tiny-llama"), spec)
    ids = torch.randint(0, model.config.vocab_size, (2, 8))
    model(input_ids=ids, labels=ids).loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "lora_B" in n]
    assert grads and all(g is not None for g in grads)


def test_adapter_artifacts_load_in_peft_and_merged_weights_match(models: Path, storage_root: str,
                                                                  tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    spec = tiny_spec(make_dataset(storage_root), "lora", merge_weights=True, max_steps=10)
    rc, events = _run(spec, models, storage_root, tmp_path / "work")
    assert rc == 0
    artifact = tmp_path / "work" / "artifact"
    config = json.loads((artifact / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == f"privtune-model-store:tiny-llama@sha256:{resolve(models, 'tiny-llama').sha256}"
    assert (artifact / "adapter_model.safetensors").exists()
    ids = torch.tensor([[5, 9, 30, 41, 77]])
    base = AutoModelForCausalLM.from_pretrained(resolve(models, "tiny-llama").path)
    with torch.no_grad():
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, artifact)(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(artifact / "merged")(ids).logits
    assert not torch.allclose(plain, adapted)
    assert torch.allclose(adapted, merged, atol=1e-4)
    provenance = json.loads((artifact / "privtune-artifact.json").read_text())
    assert provenance["base_model_sha256"] == resolve(models, "tiny-llama").sha256
    assert _completed(events)["artifact_uri"].endswith("/training/job-1/artifact")


def test_dp_sgd_reports_the_epsilon_opacus_accounts(models: Path, storage_root: str, tmp_path: Path) -> None:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    spec = tiny_spec(make_dataset(storage_root), "lora", dp={"enabled": True, "target_epsilon": 4.0,
                                                             "target_delta": 1e-5, "max_grad_norm": 1.0},
                     gradient_accumulation_steps=2, max_steps=20)
    rc, events = _run(spec, models, storage_root, tmp_path / "work")
    assert rc == 0
    reported = _completed(events)["epsilon_spent"]
    q = spec.effective_batch_size / 256
    sigma = get_noise_multiplier(target_epsilon=4.0, target_delta=1e-5, sample_rate=q, steps=20, accountant="rdp")
    accountant = RDPAccountant()
    for _ in range(20):
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    expected = accountant.get_epsilon(1e-5)
    assert reported == pytest.approx(expected, rel=0.05)
    assert reported <= 4.0 * 1.05
    progress = [e["epsilon"] for e in events if e["kind"] == "progress"]
    assert progress == sorted(progress) and progress[0] > 0  # spent grows step by step


def test_same_inputs_give_the_same_artifact(models: Path, storage_root: str, tmp_path: Path) -> None:
    uri = make_dataset(storage_root)
    first = _completed(_run(tiny_spec(uri, job_id="a", max_steps=12), models, storage_root, tmp_path / "a")[1])
    second = _completed(_run(tiny_spec(uri, job_id="b", max_steps=12), models, storage_root, tmp_path / "b")[1])
    other_seed = _completed(_run(tiny_spec(uri, job_id="c", max_steps=12, seed=8), models, storage_root,
                                 tmp_path / "c")[1])
    assert first["artifact_sha256"] == second["artifact_sha256"]
    assert other_seed["artifact_sha256"] != first["artifact_sha256"]


def test_a_corrupt_last_checkpoint_falls_back_to_the_previous(models: Path, storage_root: str,
                                                              tmp_path: Path) -> None:
    uri = make_dataset(storage_root)
    reference = _completed(_run(tiny_spec(uri, job_id="ref", max_steps=15, checkpoint_every=5), models,
                                storage_root, tmp_path / "ref")[1])
    work = tmp_path / "work"
    _run(tiny_spec(uri, max_steps=15, checkpoint_every=5, keep_last_checkpoints=3), models, storage_root, work)
    root = work / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step-00000005", "step-00000010", "step-00000015"]
    with open(root / "step-00000015" / "trainable.safetensors", "r+b") as fh:
        fh.seek(-8, 2)
        fh.write(b"\xff" * 8)
    (root / "step-00000010" / "optimizer.pt").unlink()  # partial: a file is missing
    assert ckpt.latest_valid(root).step == 5  # type: ignore[union-attr]
    rc, events = _run(tiny_spec(uri, max_steps=15, checkpoint_every=5), models, storage_root, work)
    started = next(e for e in events if e["kind"] == "started")
    assert rc == 0 and started["resumed_from_checkpoint_id"] == "step-00000005"
    assert _completed(events)["artifact_sha256"] == reference["artifact_sha256"]


def test_a_diverging_loss_fails_fast_with_the_remedy(models: Path, storage_root: str, tmp_path: Path) -> None:
    spec = tiny_spec(make_dataset(storage_root), "full", learning_rate=50.0, max_steps=30, divergence_factor=1.5)
    rc, events = _run(spec, models, storage_root, tmp_path / "work")
    failed = [e for e in events if e["kind"] == "failed"]
    assert rc == 2 and failed[0]["error_code"] == "loss_diverged"
    assert "lower learning_rate" in failed[0]["reason"] and failed[0]["retryable"] is False
    assert failed[0]["step"] < 30


def test_missing_inputs_fail_with_an_actionable_reason(models: Path, storage_root: str, tmp_path: Path) -> None:
    rc, events = _run(tiny_spec(make_dataset(storage_root), base_model="llama-70b"), models, storage_root,
                      tmp_path / "a")
    assert rc == 2 and "not in the model store" in events[-1]["reason"]
    rc, events = _run(tiny_spec(f"{storage_root}/acme/datasets/none"), models, storage_root, tmp_path / "b")
    assert rc == 2 and events[-1]["error_code"] == "invalid_input", events[-1]
    rc, events = _run(tiny_spec(make_dataset(storage_root), "dpo"), models, storage_root, tmp_path / "c")
    assert rc == 2 and "prompt/chosen/rejected" in events[-1]["reason"]


def test_running_out_of_memory_fails_with_the_settings_to_lower(models: Path, storage_root: str,
                                                                tmp_path: Path) -> None:
    spec = tiny_spec(make_dataset(storage_root), "full", micro_batch_size=128, max_seq_length=512, packing=True,
                     memory_limit_mb=8)
    process_spec = spec.canonical_json()
    import subprocess
    import sys

    from tests.training_fixtures import REPO

    (tmp_path / "spec.json").write_text(process_spec)
    result = subprocess.run([sys.executable, "-m", "gpu_worker.job", str(tmp_path / "spec.json"), "--models-root",
                             str(models), "--storage-root", storage_root, "--work-dir", str(tmp_path / "work")],
                            capture_output=True, text=True, cwd=REPO, timeout=300)
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 2 and failed["kind"] == "failed", result.stderr[-2000:]
    assert failed["error_code"] == "out_of_memory" and not failed["retryable"]
    assert "lower max_seq_length or micro_batch_size" in failed["reason"]


def test_retention_keeps_the_last_checkpoints_and_the_best(models: Path, storage_root: str, tmp_path: Path) -> None:
    from gpu_worker.checkpoint import read_state

    spec = tiny_spec(make_dataset(storage_root), "lora", max_steps=30, checkpoint_every=5, eval_every=5,
                     keep_last_checkpoints=1, learning_rate=0.05)
    rc, events = _run(spec, models, storage_root, tmp_path / "work")
    assert rc == 0
    saved = {e["checkpoint_id"]: e["metrics"]["eval_loss"] for e in events if e["kind"] == "checkpoint"}
    best = min(saved, key=saved.__getitem__)
    kept = [p.name for p in ckpt.list_checkpoints(tmp_path / "work" / "checkpoints")]
    assert kept == sorted({best, "step-00000030"})
    from services.common.storage import open_tenant_storage

    remote = {o.key.split("/")[3] for o in open_tenant_storage(storage_root, "acme").list("training/job-1/checkpoints/")}
    assert remote == set(kept)  # the same retention applies to the uploaded copies
    assert read_state(ckpt.verify(tmp_path / "work" / "checkpoints" / best))["run"]["best_checkpoint"] == best  # type: ignore[arg-type]
