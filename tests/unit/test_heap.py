"""Freezing the serving process's heap after its start (services/common/heap.py), in a child interpreter:
a frozen heap is never collected, so the test process itself must not freeze its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import gc, json
import torch, transformers  # what a platform process imports: the objects a full collection walked
from services.common.heap import freeze_startup_heap
tracked = len(gc.get_objects())
frozen = freeze_startup_heap()
garbage = [[]]
garbage[0].append(garbage)  # a cycle made after the start is still collected
del garbage
print(json.dumps({"tracked": tracked, "frozen": frozen, "left": len(gc.get_objects()), "found": gc.collect()}))
"""


def test_after_the_freeze_collections_walk_only_what_was_made_since() -> None:
    pytest.importorskip("transformers")  # (the child imports what a platform process imports)
    done = subprocess.run([sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["tracked"] > 100_000  # the imports' objects
    assert seen["frozen"] >= 0.9 * seen["tracked"]
    assert seen["left"] < 0.01 * seen["tracked"]  # what a full collection walks now
    assert seen["found"] >= 1  # the new cycle
