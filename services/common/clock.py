"""Wall-clock milliseconds (one place, so tests and records agree on units)."""

from __future__ import annotations

import time


def now_ms() -> int:
    return int(time.time() * 1000)
