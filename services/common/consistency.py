"""Reading another service's facts through one's own projection: wait briefly for it to catch up.

A projection lags its events by the relay's and the consumer's poll intervals (well under a
second when healthy). A command that names something created a moment ago (a dataset just
registered, a version just curated) would otherwise be refused as unknown; ``await_projection``
retries the lookup for a bounded time before the caller reports NotFound.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")

DEFAULT_WAIT_SECONDS = 2.0


def await_projection(lookup: Callable[[], T | None], wait_seconds: float = DEFAULT_WAIT_SECONDS,
                     interval: float = 0.05) -> T | None:
    """``lookup()``'s first non-None answer, retried for up to ``wait_seconds``; None if it never came."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = lookup()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        interval = min(interval * 2, 0.5)
