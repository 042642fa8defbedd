"""Deterministic train/holdout split by content hash: the same example always lands on the same side."""

from __future__ import annotations

import hashlib
import json


def example_key(example: dict[str, object]) -> str:
    """Canonical JSON of an example (sorted keys, no whitespace): its identity."""
    return json.dumps(example, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def is_holdout(example: dict[str, object], holdout_fraction: float, seed: int = 0) -> bool:
    """True for about ``holdout_fraction`` of examples, decided by sha256(seed, example)."""
    digest = hashlib.sha256(f"{seed}\0{example_key(example)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout_fraction
