"""services/common/signal_event.py: a signal handler's set() while its thread holds the event's lock."""

from __future__ import annotations

import threading

from services.common.signal_event import signal_event


def test_set_goes_through_when_the_thread_that_holds_the_events_lock_sets_it() -> None:
    event = signal_event()
    finished = threading.Event()

    def interrupted_wait() -> None:
        with event._cond:  # type: ignore[attr-defined]  # what wait() holds when a handler may run
            event.set()  # what the SIGTERM handler does then
        finished.set()
    thread = threading.Thread(target=interrupted_wait, daemon=True)
    thread.start()
    thread.join(30)
    assert finished.is_set(), "set() waited for its own thread (a plain threading.Event's lock)"
    assert event.is_set() and event.wait(0)


def test_it_is_an_event_across_threads() -> None:
    event = signal_event()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(event.wait(60)))
    waiter.start()
    event.set()
    waiter.join(60)
    assert woke == [True]
    event.clear()
    assert not event.is_set() and not event.wait(0.01)
