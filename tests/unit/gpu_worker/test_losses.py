"""The loss at labelled positions only equals the full-logits loss, in value and in gradients."""

from __future__ import annotations

import pytest

from gpu_worker import data, losses
from gpu_worker.base_models import build_tiny_model
from gpu_worker.synthetic import reverse_task

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    base = build_tiny_model(tmp_path_factory.mktemp("models"))
    return base, AutoTokenizer.from_pretrained(base.path)


def _model(base, method: str):  # type: ignore[no-untyped-def]
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                 init_lora_weights=False))
    model.train()
    return model


def _full_logits_loss(model, batch):  # type: ignore[no-untyped-def]
    import torch.nn.functional as F

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    logits = model(**inputs).logits[:, :-1].float()
    return F.cross_entropy(logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=data.IGNORE,
                           reduction="sum")


@pytest.mark.parametrize("method", ["lora", "full"])
@pytest.mark.parametrize("packed", [False, True])
def test_projection_at_labelled_positions_matches_full_logits(tiny, method: str, packed: bool) -> None:  # type: ignore[no-untyped-def]
    import torch

    base, tokenizer = tiny
    examples, _ = data.tokenize_sft(tokenizer, reverse_task(12, 5), 128)
    rows = data.pack_rows(examples, 128) if packed else [data.single_row(e) for e in examples]
    batch = data.collate(rows, tokenizer.pad_token_id, packed)
    model = _model(base, method)
    trained = [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    reference = _full_logits_loss(model, batch)
    reference.backward()
    expected = {name: p.grad.clone() for name, p in trained}
    model.zero_grad(set_to_none=True)

    token_loss, row_of = losses.labelled_token_losses(model, model, batch)
    token_loss.sum().backward()
    labelled = int((batch["labels"][:, 1:] != data.IGNORE).sum())
    assert token_loss.shape == row_of.shape == (labelled,)
    assert float(token_loss.sum()) == pytest.approx(float(reference), rel=1e-5)
    for name, p in trained:
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-3, atol=1e-5, msg=lambda m, n=name: f"{n}: {m}")
    assert type(model.get_output_embeddings()) is torch.nn.Linear  # the head is put back


def test_the_fused_kernel_matches_cross_entropy_with_weighted_gradients() -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(1)
    hidden = torch.randn(37, 16, requires_grad=True)
    weight = torch.randn(101, 16, requires_grad=True)
    targets = torch.randint(0, 101, (37,))
    weights = torch.rand(37)  # per-token weights, as DP's per-example means give
    (F.cross_entropy(hidden @ weight.T, targets, reduction="none") * weights).sum().backward()
    expected = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    out = losses.linear_cross_entropy(hidden, weight, targets, chunk_rows=5)  # 8 chunks, the last partial
    (out * weights).sum().backward()
    torch.testing.assert_close(out, F.cross_entropy(hidden @ weight.T, targets, reduction="none"))
    torch.testing.assert_close(hidden.grad, expected[0])
    torch.testing.assert_close(weight.grad, expected[1])


def test_bf16_compute_stays_close_to_fp32() -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(2)
    hidden, weight = torch.randn(64, 32), torch.randn(211, 32) / 4
    targets = torch.randint(0, 211, (64,))
    out = losses.linear_cross_entropy(hidden, weight, targets, compute_dtype=torch.bfloat16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(hidden @ weight.T, targets, reduction="none"),
                               rtol=0.05, atol=0.05)


def test_heads_the_kernel_cannot_fuse_take_the_full_logits_path_with_the_same_result(tiny) -> None:  # type: ignore[no-untyped-def]
    """A LoRA adapter on lm_head: the fused kernel would use the bare base head and train nothing there."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base, tokenizer = tiny
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "lm_head"],
                                      init_lora_weights=False))
    reason = losses.unfusable_because(model)
    assert "not a plain Linear" in reason
    with pytest.raises(ValueError, match="no fused loss"):
        losses.projection_head(model)
    examples, _ = data.tokenize_sft(tokenizer, reverse_task(6, 5), 128)
    batch = data.collate([data.single_row(e) for e in examples], tokenizer.pad_token_id, False)
    reference = _full_logits_loss(model, batch)
    reference.backward()
    head_grads = {n: p.grad.clone() for n, p in model.named_parameters() if "lm_head.lora" in n}
    assert head_grads and all(g.abs().sum() > 0 for g in head_grads.values())
    model.zero_grad(set_to_none=True)
    token_loss, _ = losses.labelled_token_losses(model, model, batch, fused=False)
    token_loss.sum().backward()
    assert float(token_loss.sum()) == pytest.approx(float(reference), rel=1e-6)
    for name, grad in head_grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad)


def test_other_heads_the_kernel_cannot_fuse_are_named() -> None:
    import torch

    class Model(torch.nn.Module):
        def __init__(self, head: torch.nn.Module, **config: float) -> None:
            super().__init__()
            self.head = head
            self.config = type("Config", (), config)()

        def get_output_embeddings(self) -> torch.nn.Module:
            return self.head

    linear = torch.nn.Linear(4, 8, bias=False)
    assert losses.unfusable_because(Model(linear)) == ""
    assert "bias" in losses.unfusable_because(Model(torch.nn.Linear(4, 8)))
    assert "final_logit_softcapping" in losses.unfusable_because(Model(linear, final_logit_softcapping=30.0))
    assert "logit_scale" in losses.unfusable_because(Model(linear, logit_scale=0.0625))
    assert "DP-SGD" in losses.unfusable_because(Model(linear), per_example_gradients=True)
    linear.weight.requires_grad_(False)  # a frozen head under DP-SGD (LoRA) fuses
    assert losses.unfusable_because(Model(linear), per_example_gradients=True) == ""


def test_bf16_gradients_stay_close_to_fp32() -> None:
    import torch
    import torch.nn.functional as F

    torch.manual_seed(3)
    hidden = torch.randn(48, 32, requires_grad=True)
    weight = (torch.randn(211, 32) / 4).requires_grad_()
    targets = torch.randint(0, 211, (48,))
    F.cross_entropy(hidden @ weight.T, targets, reduction="sum").backward()
    expected = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    losses.linear_cross_entropy(hidden, weight, targets, compute_dtype=torch.bfloat16, chunk_rows=7).sum().backward()
    assert hidden.grad.dtype == weight.grad.dtype == torch.float32
    for got, want in zip((hidden.grad, weight.grad), expected):
        assert float((got - want).norm() / want.norm()) < 0.02


def test_the_estimate_sizes_the_chunk_the_kernel_uses() -> None:
    from services.orchestrator.estimate import LOSS_CHUNK_ELEMENTS

    assert LOSS_CHUNK_ELEMENTS == losses.CHUNK_ELEMENTS


def test_precision_auto_is_fp32_on_cpu_and_under_dp_and_explicit_choices_stand() -> None:
    from gpu_worker.run_environment import resolve_precision

    assert resolve_precision("auto") == "fp32"  # no GPU here: CPU, where resume is bit-identical
    assert resolve_precision("auto", private=True) == "fp32"
    assert resolve_precision("bf16") == "bf16" and resolve_precision("fp32", private=True) == "fp32"
