"""Eval generation throughput: batched ``services.eval.generation`` vs one ``generate()`` call per prompt.

    .venv/bin/python benchmarks/eval_generation.py [--prompts 256] [--model tiny|smollm2]
                                                   [--max-new-tokens 32] [--batch-size 16] [--threads N]

1. The model: ``tiny`` (``gpu_worker.base_models.build_tiny_model``: a 2-layer, 64-wide Llama
   with a byte-level ChatML tokenizer, built in a temporary folder) or ``smollm2``
   (SmolLM2-135M-Instruct from the model store, ``$PRIVTUNE_MODELS`` or
   ``~/.cache/privtune/models`` as the demo uses; import it first with
   ``gpu_worker.base_models.import_smollm2``, e.g. by running the demo). Float32, CPU.
2. ``--prompts`` seeded synthetic chat prompts of varied length (a support-desk question,
   sometimes with a system prompt, 5 to 60 words).
3. Batched: ``generate(model, tokenizer, prompts, batch_size=B)`` (left padding, prompts
   grouped by length). Single: for each prompt, ``model.generate`` on its unpadded ids with
   the same greedy settings, one call per prompt.
4. Prints prompts/s and generated tokens/s of both, their ratio, and whether the outputs
   are identical token for token (exit status 1 when they are not).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORDS = ("order invoice refund parcel account password delivery address warranty screen battery "
         "subscription router printer charger receipt courier voucher upgrade contract").split()
SYSTEM = "You are a concise support assistant for an online electronics shop."


def synthetic_prompts(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """``n`` chat prompts of 5-60 words, a third of them with a system prompt."""
    rng = random.Random(seed)
    prompts = []
    for i in range(n):
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60)))
        turns = [{"role": "user", "content": f"Question {i}: why is my {words}?"}]
        prompts.append(([{"role": "system", "content": SYSTEM}] if i % 3 == 0 else []) + turns)
    return prompts


def load_model(name: str, work: Path) -> Any:
    """(model, tokenizer) of the chosen model, through the eval service's loader."""
    from services.eval.models import ModelLoader

    if name == "tiny":
        from gpu_worker.base_models import build_tiny_model

        build_tiny_model(work / "models", seed=0)
        return ModelLoader(work / "models", work / "cache").base("tiny-llama")
    from gpu_worker.base_models import SMOLLM2_ID
    from services.common.model_store import is_stored

    root = Path(os.environ.get("PRIVTUNE_MODELS", Path.home() / ".cache" / "privtune" / "models"))
    if not is_stored(root, SMOLLM2_ID):
        raise SystemExit(f"{SMOLLM2_ID} is not in the model store {root}; import it first "
                         "(gpu_worker.base_models.import_smollm2, or run the demo)")
    return ModelLoader(root, work / "cache").base(SMOLLM2_ID)


def one_at_a_time(model: Any, tokenizer: Any, prompts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
    """The baseline: ``model.generate`` per prompt, unpadded, greedy, stopping at the end-of-turn token."""
    import torch
    from transformers import GenerationConfig

    from services.eval.generation import stop_token_ids

    stops = stop_token_ids(model, tokenizer)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
    outputs = []
    with torch.inference_mode():
        for ids in prompts:
            tensor = torch.tensor([ids])
            new = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor),
                                 generation_config=config)[0, len(ids):].tolist()
            cut = next((k for k, token in enumerate(new) if token in stops), len(new))
            outputs.append(new[:cut])
    return outputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--model", choices=("tiny", "smollm2"), default="tiny")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    from services.eval.generation import generate, render_prompt

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="privtune-bench-eval-") as tmp:
        bundle = load_model(args.model, Path(tmp))
        model, tokenizer = bundle.model, bundle.tokenizer
        prompts = synthetic_prompts(args.prompts)
        prompt_ids = [render_prompt(tokenizer, p) for p in prompts]
        lengths = sorted(len(p) for p in prompt_ids)
        print(f"model {bundle.name}: {sum(p.numel() for p in model.parameters()):,} parameters, float32, "
              f"{torch.get_num_threads()} threads; {len(prompts)} prompts of {lengths[0]}-{lengths[-1]} tokens "
              f"(median {lengths[len(lengths) // 2]}), up to {args.max_new_tokens} new tokens, greedy")

        generate(model, tokenizer, prompts[:2], max_new_tokens=2, batch_size=2)   # warm-up
        started = time.perf_counter()
        batched = generate(model, tokenizer, prompts, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        single = one_at_a_time(model, tokenizer, prompt_ids, args.max_new_tokens)
        single_s = time.perf_counter() - started

    tokens = sum(g.tokens for g in batched)
    differ = [i for i, (g, s) in enumerate(zip(batched, single)) if list(g.token_ids) != s]
    print(f"batched (batch {args.batch_size}): {len(prompts) / batched_s:8.2f} prompts/s "
          f"{tokens / batched_s:9.1f} tokens/s  ({batched_s:.1f} s)")
    print(f"one at a time:      {len(prompts) / single_s:8.2f} prompts/s "
          f"{sum(len(s) for s in single) / single_s:9.1f} tokens/s  ({single_s:.1f} s)")
    print(f"speed-up: {single_s / batched_s:.2f}x")
    print("outputs identical: yes" if not differ else f"outputs identical: NO ({len(differ)} of {len(prompts)} differ, "
          f"first at prompt {differ[0]})")
    return 0 if not differ else 1


if __name__ == "__main__":
    raise SystemExit(main())
