"""How a server process is told to stop: a signal, or (an API replica) its parent's death.

A signal handler runs in the main thread between two bytecodes, possibly while that thread holds a
lock. The handler used to call ``threading.Event.set()``, which takes the event's own lock: had the
main thread been inside that event's ``wait()`` holding it, the handler would have waited for
itself forever, and nothing after the wait (the replica's stop deadline included) would have run.
So a handler here only sets an attribute, and the main thread polls it (``wait``).

A replica must not outlive its parent for long whatever its stop waits for, even a thread that
never hands back the interpreter lock: its deadline is ``faulthandler.dump_traceback_later``, a
C thread that needs no interpreter lock, writes every thread's stack to stderr (so a stuck stop
says where it stuck) and ``_exit``s. It is armed by whichever notices first, the handler or the
parent watch, before anything else is done.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time

log = logging.getLogger("privtune.cli")

POLL_S = 0.25


class StopRequest:
    """``request`` may be called from a signal handler or any thread; ``wait`` from the main thread."""

    def __init__(self, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s  # None: no forced exit (a full process stops its own children first)
        self.requested = False
        self._armed = False

    def request(self, *_: object) -> None:  # also a signal handler: no locks, no logging
        if self.deadline_s is not None and not self._armed:
            self._armed = True
            faulthandler.dump_traceback_later(self.deadline_s, exit=True, file=sys.stderr)
        self.requested = True

    def wait(self) -> None:
        while not self.requested:
            time.sleep(POLL_S)  # a signal interrupts it, and its handler runs at once (PEP 475)

    def end_with_parent(self, expected: int, every_s: float = 1.0) -> None:
        """Besides the orphan guard's death signal (which the kernel may hand to any thread, so the main
        thread may not see it until it wakes), check each ``every_s`` that ``expected`` is still the parent."""
        def watch() -> None:
            while not self.requested:
                time.sleep(every_s)
                if os.getppid() != expected:
                    self.request()
                    log.warning("API replica: the process that started it (%d) is gone; stopping", expected)
                    return
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
