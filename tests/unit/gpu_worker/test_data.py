"""Tokenisation, response-only labels, EOS, packing isolation and dataset integrity."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_worker import data
from gpu_worker.base_models import ModelStoreError, build_tiny_model, resolve
from services.common.training_spec import TrainingSpec
from gpu_worker.synthetic import reverse_task, write_dataset_version
from services.common.storage import open_tenant_storage

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = build_tiny_model(tmp_path_factory.mktemp("models"))
    model = AutoModelForCausalLM.from_pretrained(base.path)
    model.eval()
    return AutoTokenizer.from_pretrained(base.path), model


def _learned_text(tokenizer, example: data.TokenizedExample) -> str:  # type: ignore[no-untyped-def]
    return tokenizer.decode([t for t in example.labels if t != data.IGNORE])


def test_only_response_tokens_and_eos_are_learned(tiny) -> None:  # type: ignore[no-untyped-def]
    tokenizer, _ = tiny
    examples, skipped = data.tokenize_sft(tokenizer, [
        {"prompt": "Reverse abc", "completion": "cba"},
        {"instruction": "Say hi", "input": "to Bob", "output": "hi Bob"},
        {"messages": [{"role": "user", "content": "one"}, {"role": "assistant", "content": "1"},
                      {"role": "user", "content": "two"}, {"role": "assistant", "content": "2"}]},
        {"unrelated": "shape"},
    ], 128)
    assert skipped == 1
    assert [_learned_text(tokenizer, e) for e in examples] == [
        "cba<|im_end|>", "hi Bob<|im_end|>", "1<|im_end|>2<|im_end|>"]


def test_truncation_that_leaves_no_response_skips_the_example(tiny) -> None:  # type: ignore[no-untyped-def]
    tokenizer, _ = tiny
    examples, skipped = data.tokenize_sft(tokenizer, [{"prompt": "x" * 200, "completion": "y"}], 64)
    assert (examples, skipped) == ([], 1)


def test_continued_pretraining_learns_every_token_and_ends_documents_with_eos(tiny) -> None:  # type: ignore[no-untyped-def]
    tokenizer, _ = tiny
    chunks = data.tokenize_pretraining(tokenizer, [{"text": "hello world"}], 8)
    assert [len(c.input_ids) for c in chunks] == [8, 4]
    assert chunks[-1].input_ids[-1] == tokenizer.eos_token_id
    assert all(c.labels == c.input_ids for c in chunks)


def _loss_sum(model, batch) -> float:  # type: ignore[no-untyped-def]
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    **({"position_ids": batch["position_ids"]} if "position_ids" in batch else {}))
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    return float(F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=data.IGNORE, reduction="sum"))


def test_packed_rows_give_the_same_loss_as_separate_examples(tiny) -> None:  # type: ignore[no-untyped-def]
    tokenizer, model = tiny
    examples, _ = data.tokenize_sft(tokenizer, reverse_task(6, 3), 256)
    rows = data.pack_rows(examples, 256)
    assert len(rows) < len(examples)
    separate = sum(_loss_sum(model, data.collate([data.single_row(e)], tokenizer.pad_token_id, False))
                   for e in examples)
    packed = _loss_sum(model, data.collate(rows, tokenizer.pad_token_id, True))
    assert packed == pytest.approx(separate, rel=1e-5)


FLEX_CHECK = """
import json, sys
from pathlib import Path
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from gpu_worker import data, losses
from gpu_worker.base_models import build_tiny_model
from gpu_worker.synthetic import reverse_task

base = build_tiny_model(Path(sys.argv[1]))
tokenizer = AutoTokenizer.from_pretrained(base.path)
rows = data.pack_rows(data.tokenize_sft(tokenizer, reverse_task(12, 5), 128)[0], 128)
dense = data.collate(rows, tokenizer.pad_token_id, True)
sparse = data.collate(rows, tokenizer.pad_token_id, True, dense_mask=False)
assert "attention_mask" not in sparse and torch.equal(sparse["position_ids"], dense["position_ids"])
out = []
for batch, attention in ((dense, "sdpa"), (sparse, "flex_attention")):
    model = AutoModelForCausalLM.from_pretrained(base.path, attn_implementation=attention).eval()
    model.config.use_cache = False
    with torch.no_grad():
        out.append(losses.labelled_token_losses(model, model, batch)[0].tolist())
print(json.dumps(out))
"""


def test_packed_rows_without_a_dense_mask_attend_per_example_under_flex_attention(tmp_path: Path) -> None:
    """The GPU path (FlexAttention reads example boundaries from the position ids) against the
    CPU path (4-D block-diagonal mask with SDPA). Forward only: FlexAttention has no backward
    on CPU. In its own interpreter: FlexAttention compiles with inductor, which trips over a
    stdlib ``distutils`` that other tests' imports may have loaded into this one."""
    import json
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-c", FLEX_CHECK, str(tmp_path)], cwd=repo, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(repo)})
    assert done.returncode == 0, done.stderr[-2000:]
    dense, sparse = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(dense) == len(sparse) > 0
    assert sparse == pytest.approx(dense, rel=1e-5, abs=1e-5)


def test_packing_never_predicts_an_example_from_the_previous_one() -> None:
    a = data.TokenizedExample([1, 2, 3], [1, 2, 3])
    b = data.TokenizedExample([4, 5], [4, 5])
    (row,) = data.pack_rows([a, b], 16)
    assert row.labels == [data.IGNORE, 2, 3, data.IGNORE, 5]
    assert row.position_ids == [0, 1, 2, 0, 1] and row.segment_ids == [0, 0, 0, 1, 1]


def _example(n: int, first: int = 1) -> data.TokenizedExample:
    return data.TokenizedExample(list(range(first, first + n)), list(range(first, first + n)))


def test_best_fit_decreasing_fills_rows_that_next_fit_leaves_half_empty() -> None:
    # in this order next-fit opens three rows ([6] [5, 5] [4]); best-fit decreasing needs two
    examples = [_example(6), _example(5, 10), _example(5, 20), _example(4, 30)]
    rows = data.pack_rows(examples, 10)
    assert sorted(len(r.input_ids) for r in rows) == [10, 10]
    assert data.fill_ratio(rows, 10) == 1.0
    assert [r.segment_ids for r in rows] == [[0] * 6 + [1] * 4, [0] * 5 + [1] * 5]


def test_packing_keeps_every_example_once_and_within_the_row_width() -> None:
    import random

    rng = random.Random(3)
    examples = [_example(rng.randint(1, 64), 1000 * i) for i in range(500)]
    rows = data.pack_rows(examples, 64)
    assert all(len(r.input_ids) <= 64 for r in rows)
    # each example's tokens appear whole, exactly once, in one segment
    segments = sorted(tuple(r.input_ids[j] for j in range(len(r.input_ids)) if r.segment_ids[j] == s)
                      for r in rows for s in set(r.segment_ids))
    assert segments == sorted(tuple(e.input_ids) for e in examples)
    lower_bound = -(-sum(len(e.input_ids) for e in examples) // 64)
    assert len(rows) <= lower_bound * 1.05 and data.fill_ratio(rows, 64) > 0.95
    assert data.pack_rows(examples, 64) == rows  # deterministic


def test_a_shard_modified_after_curation_is_refused(tmp_path: Path) -> None:
    storage = open_tenant_storage(f"file://{tmp_path}", "acme")
    write_dataset_version(storage, "v", reverse_task(4, 1), reverse_task(2, 2))
    manifest, sha = data.read_manifest(storage, "v")
    assert len(sha) == 64 and len(data.load_split(storage, "v", manifest, "train")) == 4
    storage.write("v/train-00000.jsonl", b'{"prompt": "tampered", "completion": "x"}\n')
    with pytest.raises(data.DatasetError, match="does not match the manifest"):
        data.load_split(storage, "v", manifest, "train")
    with pytest.raises(data.DatasetError, match="not a dataset version"):
        data.read_manifest(storage, "elsewhere")


def test_base_models_are_verified_against_their_hashes(tmp_path: Path) -> None:
    base = build_tiny_model(tmp_path)
    assert resolve(tmp_path, "tiny-llama").sha256 == base.sha256
    assert build_tiny_model(tmp_path / "again").sha256 == base.sha256  # a seeded build is reproducible
    with open(base.path / "model.safetensors", "r+b") as fh:
        fh.seek(-4, 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelStoreError, match="does not match its recorded hashes"):
        resolve(tmp_path, "tiny-llama")
    with pytest.raises(ModelStoreError, match="not in the model store"):
        resolve(tmp_path, "llama-70b")


@pytest.mark.parametrize("overrides, message", [
    ({"method": "qlora", "dp": {"enabled": True}}, "DP-SGD supports methods"),
    ({"dp": {"enabled": True}, "packing": True}, "per-example clipping"),
    ({"method": "dpo", "packing": True}, "DPO compares whole"),
    ({"dp": {"enabled": True}, "precision": "bf16"}, "bf16 rounds"),
    ({"method": "rlhf"}, "method"),
    ({"learning_rate": -1}, "learning_rate"),
])
def test_inconsistent_specs_are_refused_with_the_reason(overrides: dict, message: str) -> None:
    body = {"job_id": "j", "tenant_id": "t", "base_model": "m", "dataset_uri": "file:///x"} | overrides
    with pytest.raises(ValueError, match=message):
        TrainingSpec.model_validate(body)
