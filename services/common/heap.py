"""The serving process's heap and the garbage collector.

A platform process imports torch, transformers and peft (the estimate, the trainers, the model
checks): about half a million objects the cyclic garbage collector tracks, and almost all of them
live as long as the process. Every full collection walks all of them while every thread of the
process waits: measured under the API benchmark's load, 6 full collections in a run took 1.9 s,
the longest 390 ms. ``freeze_startup_heap`` moves what exists once the platform has started to
the collector's permanent generation (``gc.freeze``), so later collections walk only what was
made since: 22 full collections took 334 ms in all, the longest 28 ms (docs/benchmarks.md).

Objects frozen this way are never collected, even if they later become cyclic garbage: call it
once, in a process that serves until it ends (``privtune serve``: ``Platform(freeze_heap=True)``),
after its services are built and before its loops run (a model an eval worker loads, then drops,
must stay collectable), not in a library or a test.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect what is garbage now, then freeze the rest; the number of objects frozen in all."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
