"""Run a command that dies with the worker: ``python -m gpu_worker.orphan_guard PROGRAM ARGS...``.

Arms ``PR_SET_PDEATHSIG=SIGKILL`` and then ``execv``s the program (the setting survives
exec). Doing this here instead of in a ``preexec_fn`` matters: a ``preexec_fn`` runs
Python between fork and exec, which can crash or deadlock a parent with many threads
(gRPC, torch, the controller); this guard is a fresh single-threaded interpreter.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    expected_parent = int(os.environ.get("PRIVTUNE_PARENT_PID", "0"))
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if expected_parent and os.getppid() != expected_parent:
        os._exit(70)  # the worker died before the death signal was armed
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
