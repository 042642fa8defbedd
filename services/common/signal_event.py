"""A ``threading.Event`` that a signal handler may set.

A Python signal handler runs in the main thread between two bytecodes, also while that thread is
inside the same event's ``wait()`` and holds the event's lock (at the start of ``Condition.wait``,
for one). ``threading.Event``'s lock is not reentrant, so a handler's ``set()`` there waits for its
own thread forever: a SIGTERM that should stop a worker would hang it instead. This event's lock
is an ``RLock``, so the handler's ``set()`` goes through. The wait it interrupted may have checked
the flag already; it then returns at its timeout, and the caller's next check sees the flag. So the
main thread waits on it with a timeout (as every loop here does), never without one.
"""

from __future__ import annotations

import threading


def signal_event() -> threading.Event:
    """A new, clear event whose ``set()`` may be called from a signal handler."""
    event = threading.Event()
    event._cond = threading.Condition(threading.RLock())  # type: ignore[attr-defined]
    return event
