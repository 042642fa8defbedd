"""Keep a consumer-group member alive while it works on one record for a long time.

A member that neither polls nor commits for longer than the bus's session timeout
loses its partitions, and the record it is still working on goes to another member,
which runs it again. ``keep_membership`` calls ``Subscription.keepalive()`` from a
background thread for as long as its ``with`` block runs (on Kafka that call does
nothing: the client heartbeats by itself).

Thread safety: a subscription is used by one thread at a time. Inside the block the
owner thread is busy with the record and must not poll or commit; leaving the block
stops and joins the keepalive thread before the owner touches the subscription again.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import parse_qs, urlsplit

from services.common.bus import Subscription

log = logging.getLogger(__name__)
DEFAULT_SESSION_TIMEOUT_MS = 30_000  # the embedded bus's default


def keepalive_interval(bus_uri: str) -> float:
    """Seconds between keepalives: a third of the URI's ``session_timeout_ms``, at most 1 s."""
    values = parse_qs(urlsplit(bus_uri).query).get("session_timeout_ms", [])
    timeout_ms = int(values[0]) if values and values[0].isdigit() else DEFAULT_SESSION_TIMEOUT_MS
    return min(1.0, timeout_ms / 3000)


@contextmanager
def keep_membership(subscription: Subscription, interval: float, name: str = "member") -> Iterator[None]:
    """Call ``subscription.keepalive()`` every ``interval`` seconds until the block ends.

    A failed keepalive is logged and retried at the next beat; if they keep failing the
    member loses its partitions, and its commit fails as it would without keepalives.
    """
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(interval):
            try:
                subscription.keepalive()
            except Exception:  # noqa: BLE001 - e.g. the bus is briefly locked; the next beat retries
                log.warning("%s: keepalive failed; retrying in %.1fs", name, interval, exc_info=True)

    thread = threading.Thread(target=beat, name=f"keepalive-{name}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
