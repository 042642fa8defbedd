"""keep_membership: keepalives while the block runs, none after it ends, failures do not stop it."""

from __future__ import annotations

import threading

import pytest

from services.common.keepalive import keep_membership, keepalive_interval

pytestmark = pytest.mark.unit


class FakeSubscription:
    def __init__(self, failures: int = 0) -> None:
        self.calls = 0
        self.failures = failures
        self.enough = threading.Event()

    def keepalive(self) -> None:
        self.calls += 1
        if self.calls >= 3:
            self.enough.set()
        if self.calls <= self.failures:
            raise OSError("the bus is locked")


@pytest.mark.parametrize("failures", [0, 2])
def test_keepalives_run_while_the_block_runs_and_stop_with_it(failures: int) -> None:
    sub = FakeSubscription(failures)
    with keep_membership(sub, 0.01):  # type: ignore[arg-type]
        assert sub.enough.wait(timeout=30), "no keepalives while the block ran"
    after = sub.calls
    threading.Event().wait(0.05)
    assert sub.calls == after  # the thread is gone once the block has ended


def test_the_interval_is_a_third_of_the_session_timeout_at_most_one_second() -> None:
    assert keepalive_interval("sqlite:///x/events.db?session_timeout_ms=1500") == 0.5
    assert keepalive_interval("sqlite:///x/events.db?partitions=2") == 1.0
    assert keepalive_interval("kafka://localhost:9092") == 1.0
