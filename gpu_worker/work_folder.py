"""One attempt at a time in a job's local work folder (checkpoints, spec, job log).

The claim makes sure one worker runs a given attempt; this lock covers what is left: a
worker presumed dead (still running attempt n on this machine) and the worker that got
attempt n+1 must not write the same folder at once. The newcomer waits until the old one
has stopped (the orchestrator tells it to at its next report) or its own attempt is stopped.
An flock dies with its process, so a SIGKILLed holder never leaves it taken.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


class WorkFolderLock:
    def __init__(self, folder: Path, poll_seconds: float = 0.5) -> None:
        self.path = folder / ".attempt.lock"
        self.poll_seconds = poll_seconds
        self._fd: int | None = None

    def acquire(self, give_up: Callable[[], bool]) -> bool:
        """Take the lock, waiting while another process holds it; False if ``give_up()`` turns true first."""
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        waited = False
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not waited:
                    log.warning("work folder %s is in use by another attempt of the job; waiting for it to stop",
                                self.path.parent)
                    waited = True
                if give_up():
                    return False
                threading.Event().wait(self.poll_seconds)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def __enter__(self) -> "WorkFolderLock":
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
