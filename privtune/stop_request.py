"""How a server process is told to stop: a signal, or (an API replica) its parent's death.

A replica must not outlive its parent for long, whatever its stop waits for. It used to rely on a
``threading.Timer`` started once the stop began: a Python daemon thread, which cannot run once the
interpreter has begun to shut down, so a hang there (a finalizer waiting for a thread, as grpcio's
objects can) would keep a replica alive. One whose parent was SIGKILLed outlived it for minutes
twice in full CI runs, most likely so (it was not reproduced). The deadline is now
``faulthandler.dump_traceback_later``: a C thread that needs no interpreter lock, writes every
thread's stack to stderr (so a stuck stop says where it stuck) and ``_exit``s. It is armed by
whichever notices first, the signal handler or the parent watch, before anything else is done, and
stays armed through the stop and the interpreter's shutdown until faulthandler itself is shut down
(late in it; ``privtune serve`` skips what would follow by ending a replica with ``os._exit``).

A signal handler runs in the main thread between two bytecodes, also while that thread holds a lock
(a ``threading.Event``'s, inside its ``wait()``): so a handler here sets an attribute and arms the
deadline, takes no lock, and the main thread polls the attribute (``wait``). What the deadline needs
is taken up front: its file descriptor (a duplicate of stderr's, or /dev/null).

Not covered: a thread that never hands the interpreter lock back before the stop is asked for keeps
the handler and the watch from running at all (nothing written in Python can help then).
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import threading
import time

log = logging.getLogger("privtune.cli")

POLL_S = 0.25


class StopRequest:
    """``request`` may be called from a signal handler or any thread; ``wait`` from the main thread."""

    def __init__(self, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s  # None: no forced exit (a full process stops its own children first)
        self.requested = False
        self.armed = False
        self._fd = -1
        if deadline_s is not None:
            try:
                self._fd = os.dup(2)
            except OSError:  # no stderr: the deadline still ends the process, without the stacks
                self._fd = os.open(os.devnull, os.O_WRONLY)

    def request(self, *_: object) -> None:  # also a signal handler: no locks, no logging, nothing that raises
        self.requested = True
        if self.deadline_s is not None and not self.armed:
            with contextlib.suppress(Exception):  # a failed arm: the next request (the watch's) tries again
                faulthandler.dump_traceback_later(self.deadline_s, exit=True, file=self._fd)
                self.armed = True

    def wait(self) -> None:
        while not self.requested:
            time.sleep(POLL_S)  # a signal's handler runs when the main thread next runs Python, within POLL_S

    def end_with_parent(self, expected: int, every_s: float = 1.0) -> None:
        """Besides the orphan guard's death signal, check each ``every_s`` that ``expected`` is still the
        parent, and ask for the stop (arming the deadline) when it is not."""
        def watch() -> None:
            told = False
            while not (self.requested and (self.armed or self.deadline_s is None)):
                time.sleep(every_s)
                if os.getppid() != expected:
                    self.request()
                    if not told:
                        told = True
                        log.warning("API replica: the process that started it (%d) is gone; stopping", expected)
        threading.Thread(target=watch, name="parent-watch", daemon=True).start()
