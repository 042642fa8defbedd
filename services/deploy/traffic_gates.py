"""Metric gates on live traffic (pure), and the watcher that rolls back when one breaks after a flip.

A deployment's ``metric_gates`` bound the error rate and the p95 latency of the pool that took
the traffic. Each gate is judged on the requests that pool finished since the flip, once there
are at least ``min_requests`` of them (a gate never fires on two unlucky requests). Errors are
answers the client could not use: 5xx statuses, upstream failures and streams cut after they
began; a client's own 4xx mistakes do not count against the model.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrafficGates:
    max_error_rate: float = 0.01          # share of failed requests
    p95_latency_seconds: float = 0.0      # the SLO; 0: no latency gate
    min_requests: int = 20

    def check(self) -> TrafficGates:
        if not 0.0 <= self.max_error_rate <= 1.0:
            raise ValueError("max_error_rate must be between 0 and 1")
        if self.p95_latency_seconds < 0 or not math.isfinite(self.p95_latency_seconds):
            raise ValueError("p95_latency_seconds must be 0 (off) or a positive number of seconds")
        if self.min_requests < 1:
            raise ValueError("min_requests must be at least 1")
        return self


@dataclass(frozen=True)
class Breach:
    gate: str                             # "error_rate" | "p95_latency"
    observed: float
    limit: float
    requests: int

    def describe(self) -> str:
        if self.gate == "error_rate":
            return (f"error rate {self.observed:.1%} over {self.requests} requests exceeds the gate's "
                    f"{self.limit:.1%} by {self.observed - self.limit:.1%}")
        return (f"p95 latency {self.observed * 1000:.0f} ms over {self.requests} requests exceeds the SLO's "
                f"{self.limit * 1000:.0f} ms by {(self.observed - self.limit) * 1000:.0f} ms")


def p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def evaluate(outcomes: Sequence[tuple[bool, float]], gates: TrafficGates) -> list[Breach]:
    """The gates ``outcomes`` (ok, seconds) break; none before ``min_requests``."""
    if len(outcomes) < gates.min_requests:
        return []
    breaches = []
    errors = sum(1 for ok, _ in outcomes if not ok) / len(outcomes)
    if errors > gates.max_error_rate:
        breaches.append(Breach("error_rate", errors, gates.max_error_rate, len(outcomes)))
    if gates.p95_latency_seconds > 0:
        latency = p95([seconds for ok, seconds in outcomes if ok] or [math.inf])
        if latency > gates.p95_latency_seconds:
            breaches.append(Breach("p95_latency", latency, gates.p95_latency_seconds, len(outcomes)))
    return breaches


async def watch_after_flip(outcomes_since: Callable[[float], Sequence[tuple[bool, float]]], gates: TrafficGates,
                           rollback: Callable[[list[Breach]], object], *, watch_seconds: float,
                           still_current: Callable[[], bool], interval: float = 0.1) -> list[Breach]:
    """Judge the new pool's traffic for ``watch_seconds`` after a flip; on a breach, ``rollback(breaches)`` once.

    Stops early (returning []) when the routing changed under it (``still_current`` false): someone else
    moved traffic, and a rollback based on the old routing must not undo that.
    """
    started = time.monotonic()
    while time.monotonic() - started < watch_seconds:
        if not still_current():
            return []
        breaches = evaluate(outcomes_since(started), gates)
        if breaches:
            log.warning("traffic gate broke after a flip: %s", "; ".join(b.describe() for b in breaches))
            result = rollback(breaches)
            if asyncio.iscoroutine(result):
                await result
            return breaches
        await asyncio.sleep(interval)
    return []
