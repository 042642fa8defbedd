"""Dataset versions in, token tensors out: shard loading, chat formatting, masking, packing.

Rules a recipe relies on:
- loss only on response tokens (every assistant turn, ending with its EOS / end-of-turn
  token); prompt and template tokens carry label -100;
- the chat template comes from the tokenizer;
- continued pretraining trains on every token of raw text, each document ending in EOS;
- packing concatenates examples into rows of ``max_seq_length``; ``segment_ids`` keep
  attention inside each example and position ids restart at every example.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from services.common.storage import TenantStorage

IGNORE = -100


class DatasetError(Exception):
    """The dataset version cannot be trained on.

    ``safe_reason`` is what may leave the tenant's boundary (the TrainingFailed event): privtune's
    own words, never a value read from the tenant's files. The message itself (logged to the job
    log in the tenant's storage) may name what it found, such as a shard's name.
    """

    def __init__(self, message: str, safe_reason: str | None = None) -> None:
        super().__init__(message)
        self.safe_reason = safe_reason if safe_reason is not None else message


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class PreferenceExample:
    chosen: TokenizedExample
    rejected: TokenizedExample


def read_manifest(storage: TenantStorage, prefix: str) -> tuple[dict[str, Any], str]:
    """The version's manifest and its sha256 (the dataset identity a run records)."""
    prefix = prefix.strip("/")
    key = f"{prefix}/manifest.json" if prefix else "manifest.json"
    if not storage.exists(key):
        raise DatasetError(f"no manifest.json under {storage.uri_for(prefix)}: not a dataset version folder")
    with storage.open(key) as fh:
        body = fh.read()
    return json.loads(body), hashlib.sha256(body).hexdigest()


def load_split(storage: TenantStorage, prefix: str, manifest: dict[str, Any], split: str) -> list[dict[str, Any]]:
    """Every example of ``split``, each shard verified against the manifest's sha256."""
    prefix = prefix.strip("/")
    examples: list[dict[str, Any]] = []
    for shard in manifest.get("shards", []):
        if shard["split"] != split:
            continue
        key = f"{prefix}/{shard['name']}" if prefix else shard["name"]
        with storage.open(key) as fh:
            body = fh.read()
        if hashlib.sha256(body).hexdigest() != shard["sha256"]:
            advice = "the dataset version was modified after curation; curate it again"
            raise DatasetError(f"shard {shard['name']} does not match the manifest's sha256: {advice}",
                               safe_reason=f"a {split} shard does not match the manifest's sha256: {advice}")
        examples.extend(json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip())
    return examples


def as_messages(example: dict[str, Any]) -> list[dict[str, str]] | None:
    """The example as chat turns, whatever shape curation wrote it in."""
    if "messages" in example:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in example["messages"]]
    if "instruction" in example:
        prompt = example["instruction"] + (f"\n\n{example['input']}" if example.get("input") else "")
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": str(example["output"])}]
    if "prompt" in example and "completion" in example:
        return [{"role": "user", "content": str(example["prompt"])},
                {"role": "assistant", "content": str(example["completion"])}]
    return None


def as_text(example: dict[str, Any]) -> str:
    """Raw text for continued pretraining: a ``text`` field, or the example's turns joined."""
    if "text" in example:
        return str(example["text"])
    messages = as_messages(example)
    if messages:
        return "\n\n".join(m["content"] for m in messages)
    return "\n\n".join(str(v) for v in example.values() if isinstance(v, str))


def _render(tokenizer: Any, messages: Sequence[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=generation_prompt)


def response_spans(tokenizer: Any, messages: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the model must learn.

    A span starts after the assistant header the template adds and ends just after the
    end-of-turn token (the tokenizer's EOS), so the model learns to stop.
    """
    full = _render(tokenizer, messages, False)
    eos = tokenizer.eos_token
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = len(_render(tokenizer, messages[:i], True)) if i else 0
        end = len(_render(tokenizer, messages[: i + 1], False))
        stop = full.find(eos, start + len(message["content"]), end + len(eos)) if eos else -1
        spans.append((start, stop + len(eos) if stop >= 0 else end))
    if eos and not full.rstrip().endswith(eos):
        full += eos  # templates without an end-of-turn token: the EOS is appended and learned
        spans[-1:] = [(spans[-1][0], len(full))] if spans else []
    return full, spans


def tokenize_chat(tokenizer: Any, messages: Sequence[dict[str, str]], max_len: int) -> TokenizedExample | None:
    """Token ids with labels on assistant spans only; ``None`` when no response token fits."""
    text, spans = response_spans(tokenizer, messages)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"][:max_len], enc["offset_mapping"][:max_len]
    labels = [tok if any(s <= a and b <= e and b > a for s, e in spans) else IGNORE
              for tok, (a, b) in zip(ids, offsets)]
    if all(label == IGNORE for label in labels):
        return None
    return TokenizedExample(ids, labels)


def tokenize_text(tokenizer: Any, text: str, max_len: int) -> list[TokenizedExample]:
    """Raw text cut into ``max_len`` chunks (EOS at the end of the document), loss everywhere."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [TokenizedExample(ids[i:i + max_len], ids[i:i + max_len]) for i in range(0, len(ids), max_len)
            if len(ids[i:i + max_len]) > 1]


def tokenize_sft(tokenizer: Any, examples: Sequence[dict[str, Any]], max_len: int) -> tuple[list[TokenizedExample], int]:
    """Tokenized SFT examples and the number skipped (not chat-shaped, or no response fits)."""
    out, skipped = [], 0
    for example in examples:
        messages = as_messages(example)
        tokenized = tokenize_chat(tokenizer, messages, max_len) if messages else None
        if tokenized is None:
            skipped += 1
        else:
            out.append(tokenized)
    return out, skipped


def tokenize_pretraining(tokenizer: Any, examples: Sequence[dict[str, Any]], max_len: int) -> list[TokenizedExample]:
    return [chunk for example in examples for chunk in tokenize_text(tokenizer, as_text(example), max_len)]


def tokenize_preferences(tokenizer: Any, examples: Sequence[dict[str, Any]],
                         max_len: int) -> tuple[list[PreferenceExample], int]:
    out, skipped = [], 0
    for example in examples:
        if not all(k in example for k in ("prompt", "chosen", "rejected")):
            skipped += 1
            continue
        prompt = [{"role": "user", "content": str(example["prompt"])}]
        chosen = tokenize_chat(tokenizer, prompt + [{"role": "assistant", "content": str(example["chosen"])}], max_len)
        rejected = tokenize_chat(tokenizer, prompt + [{"role": "assistant", "content": str(example["rejected"])}],
                                 max_len)
        if chosen is None or rejected is None:
            skipped += 1
        else:
            out.append(PreferenceExample(chosen, rejected))
    return out, skipped


# ------------------------------------------------------------------ batches

@dataclass(frozen=True)
class Row:
    """One row of a batch: several examples when packed, one otherwise."""

    input_ids: list[int]
    labels: list[int]
    segment_ids: list[int]
    position_ids: list[int]


def single_row(example: TokenizedExample) -> Row:
    n = len(example.input_ids)
    return Row(list(example.input_ids), list(example.labels), [0] * n, list(range(n)))


def pack_rows(examples: Sequence[TokenizedExample], max_len: int) -> list[Row]:
    """Best-fit decreasing packing; an example never spans two rows.

    Longest example first, each into the row with the least room that still fits it (a
    new row when none does). Deterministic: ties go to the earlier example and row.
    Rows come out in the order they were opened; the step plan shuffles them anyway.
    """
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i].input_ids), i))
    members: list[list[int]] = []
    room: list[tuple[int, int]] = []  # (free positions, row index), ascending
    for i in order:
        n = len(examples[i].input_ids)
        k = bisect.bisect_left(room, (n, -1))
        if k == len(room):
            members.append([i])
            if max_len > n:
                bisect.insort(room, (max_len - n, len(members) - 1))
        else:
            free, row = room.pop(k)
            members[row].append(i)
            if free > n:  # a full row leaves the search
                bisect.insort(room, (free - n, row))
    return [_packed_row([examples[i] for i in row]) for row in members]


def _packed_row(examples: Sequence[TokenizedExample]) -> Row:
    ids: list[int] = []
    labels: list[int] = []
    segs: list[int] = []
    pos: list[int] = []
    for seg, example in enumerate(examples):
        ids += example.input_ids
        # The first token of an example is never predicted from the previous example.
        labels += [IGNORE] + list(example.labels[1:])
        segs += [seg] * len(example.input_ids)
        pos += list(range(len(example.input_ids)))
    return Row(ids, labels, segs, pos)


def fill_ratio(rows: Sequence[Row], max_len: int) -> float:
    """Share of the rows' ``max_len`` positions that hold tokens (1.0: no padding at all)."""
    return sum(len(r.input_ids) for r in rows) / (len(rows) * max_len) if rows else 0.0


def collate(rows: Sequence[Row], pad_id: int, packed: bool, mask_dtype: Any = None,
            dense_mask: bool = True) -> dict[str, Any]:
    """Right-padded tensors. Packed rows get a 4-D block-diagonal causal mask (additive, in
    ``mask_dtype``: the dtype attention computes in, fp32 by default), or with
    ``dense_mask=False`` none at all: the restarting position ids mark the examples (each
    padding position is an example of its own), for kernels that read them (FlexAttention)."""
    import torch

    mask_dtype = mask_dtype or torch.float32
    width = max(len(r.input_ids) for r in rows)
    pad = [width - len(r.input_ids) for r in rows]
    input_ids = torch.tensor([r.input_ids + [pad_id] * p for r, p in zip(rows, pad)])
    labels = torch.tensor([r.labels + [IGNORE] * p for r, p in zip(rows, pad)])
    batch: dict[str, Any] = {"input_ids": input_ids, "labels": labels}
    if packed and not dense_mask:
        batch["position_ids"] = torch.tensor([r.position_ids + [0] * p for r, p in zip(rows, pad)])
    elif packed:
        segs = torch.tensor([r.segment_ids + [-1] * p for r, p in zip(rows, pad)])
        same = segs[:, :, None] == segs[:, None, :]
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        allowed = same & causal & (segs[:, :, None] >= 0)
        allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves (no NaN)
        mask = torch.zeros(allowed.shape, dtype=mask_dtype).masked_fill(~allowed, torch.finfo(mask_dtype).min)
        batch["attention_mask"] = mask[:, None, :, :]
        batch["position_ids"] = torch.tensor([r.position_ids + [0] * p for r, p in zip(rows, pad)])
    else:
        batch["attention_mask"] = torch.tensor([[1] * len(r.input_ids) + [0] * p for r, p in zip(rows, pad)])
    return batch


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
