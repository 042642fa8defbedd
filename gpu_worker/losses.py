"""Token losses computed only where a label is: no ``positions x vocabulary`` fp32 tensor.

A causal LM's forward normally ends with the LM head at every position, and the loss
then takes a log-softmax over the whole vocabulary there, although in chat SFT only
about half of the positions carry a label. Here the forward stops at the final hidden
states (the LM head is swapped for an identity while it runs, so wrappers such as
PEFT, DDP and Opacus see an ordinary forward), the labelled positions are gathered,
and :func:`linear_cross_entropy` applies the LM head and the cross-entropy to them in
chunks of rows.

:func:`linear_cross_entropy` is our own fused kernel in plain torch, in the manner of
Liger-Kernel's fused linear cross-entropy: the forward computes each chunk's logits,
its loss and, when the hidden states need a gradient, the gradient with respect to
them (``(softmax - onehot) @ W``), then drops the logits; the backward only scales
that stored gradient by the incoming one. A trained LM head (full fine-tuning)
recomputes each chunk's logits in the backward for its weight gradient. Liger itself
needs Triton (CUDA); this works on every device torch runs on, is deterministic on
CPU, and costs one ``chunk x vocabulary`` fp32 block of memory at a time.

Where fusing would be wrong, :func:`labelled_token_losses` runs the model's own head at
every position and gathers the labelled logits instead (correct, not faster): a head that
is not a plain bias-free ``nn.Linear`` (a LoRA adapter on ``lm_head``, a bias), logit
soft-capping or scaling (Gemma 2, Cohere), and a trained head under DP-SGD, whose
per-example gradients Opacus takes from hooks on the head module itself.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Iterator

IGNORE = -100
CHUNK_ELEMENTS = 1 << 23  # logits per chunk: 8M fp32 values (32 MiB) at a time


def shifted_targets(labels: Any) -> Any:
    """``targets[:, t] = labels[:, t + 1]`` (what position ``t`` predicts); the last column is IGNORE."""
    import torch

    return torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], IGNORE)], dim=1)


def unfusable_because(model: Any, per_example_gradients: bool = False) -> str:
    """Why the fused loss would be wrong for ``model`` ("" when it is exact)."""
    import torch

    head = model.get_output_embeddings()
    config = getattr(model, "config", None)
    configs = [config]
    text = getattr(config, "get_text_config", None)
    if callable(text):  # multimodal models keep the language model's settings in text_config
        configs.append(text())
    for cfg in configs:
        for name in ("final_logit_softcapping", "logit_scale", "logits_scaling"):
            if getattr(cfg, name, None) not in (None, 1.0):
                return f"the model applies {name}"
    if head is None or type(head) is not torch.nn.Linear:
        return f"the LM head is a {type(head).__name__}, not a plain Linear (an adapter on lm_head?)"
    if head.bias is not None:
        return "the LM head has a bias"
    if per_example_gradients and head.weight.requires_grad:
        return "DP-SGD needs per-example gradients of the trained LM head from its own module"
    return ""


def fused_matches(forward_model: Any, core_model: Any, batch: dict[str, Any], compute_dtype: Any = None,
                  rtol: float = 1e-3) -> bool:
    """Whether the fused loss equals the model's own head on ``batch`` (no gradients): the guard
    against a model that changes its logits in a way :func:`unfusable_because` does not know."""
    import torch

    with torch.no_grad():
        fused, _ = labelled_token_losses(forward_model, core_model, batch, compute_dtype, fused=True)
        full, _ = labelled_token_losses(forward_model, core_model, batch, compute_dtype, fused=False)
    return bool(torch.allclose(fused.float(), full.float(), rtol=rtol, atol=rtol))


def projection_head(model: Any) -> Any:
    """The model's LM head; ValueError naming why when the fused loss cannot use it."""
    reason = unfusable_because(model)
    if reason:
        raise ValueError(f"{type(model).__name__}: no fused loss: {reason}")
    return model.get_output_embeddings()


@contextlib.contextmanager
def hidden_states_out(model: Any) -> Iterator[Any]:
    """While inside, the model's forward returns final hidden states in ``logits``; yields the LM head."""
    import torch

    head = projection_head(model)
    owners = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
              if child is head]
    for parent, name in owners:
        setattr(parent, name, torch.nn.Identity())
    try:
        yield head
    finally:
        for parent, name in owners:
            setattr(parent, name, head)


def labelled_token_losses(forward_model: Any, core_model: Any, batch: dict[str, Any],
                          compute_dtype: Any = None, fused: bool = True) -> tuple[Any, Any]:
    """Cross-entropy of every labelled next token in ``batch`` and the batch row of each.

    ``forward_model`` is what the forward runs through (the model, or its DDP/Opacus
    wrapper); ``core_model`` owns the LM head. Returns ``(losses, rows)``, both ``[K]``
    for the K labelled positions, in row-major order. ``fused=False`` (see
    :func:`unfusable_because`) runs the model's own head everywhere, then gathers.
    """
    import torch.nn.functional as F

    targets = shifted_targets(batch["labels"])
    rows, cols = (targets != IGNORE).nonzero(as_tuple=True)
    width = batch["input_ids"].shape[1]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    if not fused:
        logits = forward_model(**inputs).logits[:, -width:]
        return F.cross_entropy(logits[rows, cols].float(), targets[rows, cols], reduction="none"), rows
    with hidden_states_out(core_model) as head:
        hidden = forward_model(**inputs).logits
    hidden = hidden[:, -width:]  # a soft prompt (prompt tuning) adds positions in front
    losses = linear_cross_entropy(hidden[rows, cols], head.weight, targets[rows, cols], compute_dtype)
    return losses, rows


def linear_cross_entropy(hidden: Any, weight: Any, targets: Any, compute_dtype: Any = None,
                         chunk_rows: int | None = None) -> Any:
    """Per-row ``cross_entropy(hidden @ weight.T, targets)`` (``[K]``, fp32), without ``K x V`` logits.

    ``compute_dtype`` is the dtype of the two matmuls (default: ``hidden``'s); the
    softmax is always fp32.
    """
    if chunk_rows is None:
        chunk_rows = max(1, CHUNK_ELEMENTS // weight.shape[0])
    return _function().apply(hidden, weight, targets, compute_dtype or hidden.dtype, chunk_rows)


def _chunk_logits(h: Any, w: Any) -> Any:
    return (h @ w.T).float()


@functools.cache
def _function() -> Any:
    """The autograd function, built on first use so that importing this module does not import torch."""
    import torch

    class LinearCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, hidden: Any, weight: Any, targets: Any, dtype: Any, chunk: int) -> Any:
            with torch.autocast(hidden.device.type, enabled=False):
                n = hidden.shape[0]
                losses = torch.empty(n, dtype=torch.float32, device=hidden.device)
                lse_all = torch.empty(n, dtype=torch.float32, device=hidden.device)
                need_h = ctx.needs_input_grad[0]
                grad_hidden = torch.empty_like(hidden) if need_h else None
                w = weight.detach().to(dtype)
                for start in range(0, n, chunk):
                    stop = min(n, start + chunk)
                    h = hidden[start:stop].detach().to(dtype)
                    t = targets[start:stop]
                    logits = _chunk_logits(h, w)
                    lse = torch.logsumexp(logits, dim=-1)
                    losses[start:stop] = lse - logits.gather(1, t[:, None]).squeeze(1)
                    lse_all[start:stop] = lse
                    if need_h:
                        probs = logits.sub_(lse[:, None]).exp_()
                        probs[torch.arange(stop - start, device=probs.device), t] -= 1.0
                        grad_hidden[start:stop] = (probs.to(dtype) @ w).to(hidden.dtype)
            keep = ctx.needs_input_grad[1]  # the inputs are needed again only for the weight's gradient
            ctx.save_for_backward(hidden if keep else None, weight if keep else None, targets, lse_all, grad_hidden)
            ctx.dtype, ctx.chunk = dtype, chunk
            return losses

        @staticmethod
        def backward(ctx: Any, grad_losses: Any) -> Any:
            hidden, weight, targets, lse_all, grad_hidden = ctx.saved_tensors
            grad_h = grad_w = None
            with torch.autocast(targets.device.type, enabled=False):
                if ctx.needs_input_grad[0]:
                    grad_h = (grad_hidden * grad_losses[:, None].to(grad_hidden.dtype))
                if ctx.needs_input_grad[1]:
                    w = weight.detach().to(ctx.dtype)
                    acc = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
                    for start in range(0, targets.shape[0], ctx.chunk):
                        stop = min(targets.shape[0], start + ctx.chunk)
                        h = hidden[start:stop].detach().to(ctx.dtype)
                        t = targets[start:stop]
                        d = _chunk_logits(h, w).sub_(lse_all[start:stop, None]).exp_()
                        d[torch.arange(stop - start, device=d.device), t] -= 1.0
                        d.mul_(grad_losses[start:stop, None])
                        acc += (d.to(ctx.dtype).T @ h).float()
                    grad_w = acc.to(weight.dtype)
            return grad_h, grad_w, None, None, None

    return LinearCrossEntropy

