"""Batched, deterministic generation and answer scoring with a causal LM.

Results never depend on how items are batched: prompts are left-padded (positions come
from the attention mask), greedy decoding takes the argmax, and sampling
(``temperature > 0``) draws each item's noise from its own generator, seeded from the
eval's seed and the item id (Gumbel-max: ``argmax(logits / T + Gumbel noise)`` is a
sample of ``softmax(logits / T)``), so an item gets the same output alone or in any batch,
and candidate and reference see the same noise for an item.

Scoring (:func:`answer_nll`) sums the negative log-likelihood of an answer's tokens as the
assistant turn after a prompt, in one forward pass per batch (right padding: positions
are the unpadded ones).

Everything runs under ``torch.inference_mode()``; no text is ever logged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch

Messages = Sequence[Mapping[str, str]]
SCORE_BATCH = 64                 # answers per scoring forward pass (canary candidates, references)
LOGITS_BUDGET = 1 << 27          # float32 logits per forward pass (512 MiB); larger batches are split


@dataclass(frozen=True)
class DecodingSettings:
    """How a shard decodes; every eval worker of one eval uses the same."""

    max_new_tokens: int = 64     # generation length cap per answer (GenerationSettings' default)
    batch_size: int = 16         # prompts per generate() call
    temperature: float = 0.0     # 0: greedy; > 0: sampling, seeded per item
    seed: int = 0                # the eval's seed (sampling noise per item derives from it)


@dataclass(frozen=True)
class Generation:
    """One generated answer."""

    text: str                    # decoded, special tokens skipped
    tokens: int                  # generated tokens before the end-of-turn token
    token_ids: tuple[int, ...]   # those tokens


# -- prompts and token ids ------------------------------------------------------------------------


def render_prompt(tokenizer: Any, messages: Messages) -> list[int]:
    """Token ids of ``messages`` as a chat prompt that asks for the next assistant turn."""
    text = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=False, add_generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_ids(tokenizer: Any, messages: Messages, answer: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) of ``answer`` as the assistant turn after ``messages``.

    The answer's tokens are what the chat template puts after the generation prompt:
    the answer text and the end-of-turn token (whitespace after it is dropped). A
    template that does not extend the prompt that way gets the answer plus EOS, as the
    trainer does.
    """
    turns = [dict(m) for m in messages]
    prompt = tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*turns, {"role": "assistant", "content": answer}], tokenize=False,
                                         add_generation_prompt=False)
    suffix = full[len(prompt):].rstrip() if full.startswith(prompt) else answer + (tokenizer.eos_token or "")
    encode = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return list(encode), list(tokenizer(suffix, add_special_tokens=False)["input_ids"])


def item_seed(seed: int, item_id: str) -> int:
    """The sampling seed of one item: a function of the eval's seed and the item id only."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Token ids that end an answer: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if isinstance(i, int))


def context_limit(model: Any) -> int | None:
    """The model's maximum sequence length, when its config states one."""
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return int(limit) if isinstance(limit, int) and limit > 0 else None


def _fit(ids: Sequence[int], room: int | None) -> list[int]:
    """``ids`` cut from the left to at most ``room`` tokens (the end of a prompt matters most)."""
    return list(ids[-room:]) if room is not None and room > 0 and len(ids) > room else list(ids)


def _batches(order: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), max(1, size)):
        yield list(order[start:start + max(1, size)])


# -- generation -------------------------------------------------------------------------------------


class _SeededGumbel:
    """Logits processor: ``logits / T`` plus per-row Gumbel noise from per-item generators (see module doc)."""

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g, dtype=torch.float64) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-300)))
        return scores / self.temperature + gumbel.to(device=scores.device, dtype=scores.dtype)


@torch.inference_mode()
def generate_ids(model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int,
                 batch_size: int = 8, temperature: float = 0.0, seeds: Sequence[int] | None = None,
                 stop: bool = True) -> list[list[int]]:
    """Generated token ids for each prompt (ids), in order; at most ``max_new_tokens`` each.

    ``stop``: end each answer at an end-of-turn token (returned ids stop before it); when
    False exactly ``max_new_tokens`` tokens are generated (the extraction probe). Prompts
    are batched by length (less padding); the result of a prompt does not depend on the
    others. ``seeds`` (one per prompt) is required when ``temperature > 0``.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    if temperature > 0 and (seeds is None or len(seeds) != len(prompts)):
        raise ValueError("sampling (temperature > 0) needs one seed per prompt")
    if max_new_tokens <= 0 or not prompts:
        return [[] for _ in prompts]
    limit = context_limit(model)
    room = None if limit is None else limit - max_new_tokens
    rows = [_fit(p, room) for p in prompts]
    stops = stop_token_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (stops or [0])[0]
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad_id,
                              eos_token_id=stops if stop else [])
    device = _device(model)
    results: list[list[int]] = [[] for _ in prompts]
    for batch in _generation_batches(model, [len(r) for r in rows], batch_size):
        width = max(len(rows[i]) for i in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            input_ids[row, width - len(rows[i]):] = torch.tensor(rows[i], dtype=torch.long)
            attention[row, width - len(rows[i]):] = 1
        processors = LogitsProcessorList()
        if temperature > 0:
            assert seeds is not None
            processors.append(_SeededGumbel([seeds[i] for i in batch], temperature))
        out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                             generation_config=config, logits_processor=processors)
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            results[i] = _until_stop(new, stops) if stop else new[:max_new_tokens]
    return results


def _generation_batches(model: Any, lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Prompt indices in batches, longest first. Prompt-learning adapters (PEFT prompt tuning) drop
    the position ids that left padding needs, so for them a batch holds prompts of one length only."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    if not _is_prompt_learning(model):
        yield from _batches(order, batch_size)
        return
    for length in sorted(set(lengths), reverse=True):
        yield from _batches([i for i in order if lengths[i] == length], batch_size)


def _is_prompt_learning(model: Any) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _until_stop(ids: list[int], stops: Sequence[int]) -> list[int]:
    for position, token in enumerate(ids):
        if token in stops:
            return ids[:position]
    return ids


def generate(model: Any, tokenizer: Any, prompts: Sequence[Messages], *, max_new_tokens: int, batch_size: int = 8,
             temperature: float = 0.0, seeds: Sequence[int] | None = None) -> list[Generation]:
    """The model's answer to each chat prompt, in order (see :func:`generate_ids`)."""
    ids = generate_ids(model, tokenizer, [render_prompt(tokenizer, p) for p in prompts],
                       max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=temperature, seeds=seeds)
    return [Generation(tokenizer.decode(tokens, skip_special_tokens=True), len(tokens), tuple(tokens))
            for tokens in ids]


# -- scoring -----------------------------------------------------------------------------------------


@torch.inference_mode()
def forward_logits(model: Any, rows: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Float32 logits ``[len(rows), max len, vocab]`` of right-padded ``rows``, aligned with their tokens.

    Models that prepend virtual tokens (PEFT prompt tuning) return longer logits; the last
    ``max len`` positions are the ones of the input tokens.
    """
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(list(r), dtype=torch.long)
        attention[i, :len(r)] = 1
    device = _device(model)
    logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
    return logits[:, -width:].float()


def _vocab_size(model: Any) -> int:
    embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(embeddings, "weight", None)
    return int(weight.shape[0]) if weight is not None else int(model.config.vocab_size)


def score_batches(model: Any, lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of rows (longest first) in forward passes of at most ``batch_size`` rows and
    :data:`LOGITS_BUDGET` logits."""
    vocab = _vocab_size(model)
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batch: list[int] = []
    for i in order:
        width = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) >= batch_size or (len(batch) + 1) * width * vocab > LOGITS_BUDGET):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.inference_mode()
def sequence_nll(model: Any, tokenizer: Any, sequences: Sequence[tuple[Sequence[int], Sequence[int]]], *,
                 batch_size: int = SCORE_BATCH) -> list[tuple[float, int]]:
    """(sum NLL in nats, token count) of each ``answer`` ids after its ``prompt`` ids, in order."""
    limit = context_limit(model)
    rows: list[list[int]] = []
    starts: list[int] = []
    for prompt, answer in sequences:
        room = None if limit is None else max(1, limit - len(answer))
        head = _fit(prompt, room) or [tokenizer.eos_token_id]   # an answer's first token needs a position before it
        rows.append([*head, *answer][: limit or None])
        starts.append(len(head))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    for batch in score_batches(model, [len(r) for r in rows], batch_size):
        logits = forward_logits(model, [rows[i] for i in batch], pad_id)
        for row, i in enumerate(batch):
            start, end = starts[i], len(rows[i])
            if end <= start:
                continue
            log_probs = torch.log_softmax(logits[row, start - 1:end - 1], dim=-1)
            targets = torch.tensor(rows[i][start:end], dtype=torch.long, device=log_probs.device)
            nll = -log_probs.gather(1, targets[:, None]).sum()
            results[i] = (float(nll), end - start)
    return results


def pairs_nll(model: Any, tokenizer: Any, pairs: Sequence[tuple[Messages, str]], *,
              batch_size: int = SCORE_BATCH) -> list[tuple[float, int]]:
    """(sum NLL in nats, token count) of each answer as the assistant turn after its prompt, in order."""
    return sequence_nll(model, tokenizer, [answer_ids(tokenizer, messages, answer) for messages, answer in pairs],
                        batch_size=batch_size)


def answer_nll(model: Any, tokenizer: Any, messages: Messages, answers: Sequence[str], *,
               batch_size: int = SCORE_BATCH) -> list[tuple[float, int]]:
    """(sum NLL in nats, token count) of each of ``answers`` as the assistant turn after ``messages``.

    The token count includes the end-of-turn token (see :func:`answer_ids`).
    """
    return pairs_nll(model, tokenizer, [(messages, answer) for answer in answers], batch_size=batch_size)


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device
