"""Small learnable datasets written as dataset versions, for tests, benchmarks and demos.

The task is spelling a random word backwards: the answer depends on the prompt, so
held-out loss only falls if the model learns the mapping (and the reply format).
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any, Sequence

from services.common.storage import TenantStorage


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 6)))


def reverse_task(n: int, seed: int = 0, shape: str = "chat") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for _ in range(n):
        word = _word(rng)
        prompt, answer = f"Reverse {word}", word[::-1]
        if shape == "chat":
            out.append({"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]})
        elif shape == "preference":
            out.append({"prompt": prompt, "chosen": answer, "rejected": "I would rather not."})
        elif shape == "text":
            out.append({"text": f"The word {word} reversed is {answer}."})
        else:
            raise ValueError(f"unknown shape {shape!r}")
    return out


def write_dataset_version(storage: TenantStorage, prefix: str, train: Sequence[dict[str, Any]],
                          holdout: Sequence[dict[str, Any]], recipe: str = "synthetic") -> str:
    """Write shards and a manifest shaped like curation's; returns the manifest sha256."""
    shards = []
    for split, rows in (("train", train), ("holdout", holdout)):
        body = "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows).encode()
        name = f"{split}-00000.jsonl"
        storage.write(f"{prefix}/{name}", body)
        shards.append({"name": name, "split": split, "records": len(rows), "bytes": len(body),
                       "sha256": hashlib.sha256(body).hexdigest()})
    manifest = {"schema": 1, "dataset_id": "synthetic", "recipe": recipe, "shards": shards,
                "counts": {"train": len(train), "holdout": len(holdout), "quarantined": 0}}
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    storage.write(f"{prefix}/manifest.json", body)
    return hashlib.sha256(body).hexdigest()
