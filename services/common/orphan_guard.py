"""Run a command that dies with the process that started it:

    PRIVTUNE_PARENT_PID=<pid> python -m services.common.orphan_guard PROGRAM ARGS...
    (or, isolated: python -I <repo>/services/common/orphan_guard.py PROGRAM ARGS...)

Arms ``PR_SET_PDEATHSIG`` (``SIGKILL``, or the signal named by ``PRIVTUNE_PARENT_DEATH_SIGNAL``, e.g.
``SIGTERM`` for a server that stops its own children on it) and then ``execv``s the program (the
setting survives exec). Doing this here instead of in a ``preexec_fn`` matters: a ``preexec_fn`` makes
Python fork the whole parent and run Python between fork and exec, which can crash or deadlock a
parent with many threads (gRPC, torch, the controller) and was seen to corrupt a gRPC TLS
connection; without one, the parent starts this guard with ``vfork``, and the guard is a fresh
single-threaded interpreter. The signal fires when the *thread* that started the guard ends, so
start it from a thread that lives as long as the parent. Used by the training worker (jobs) and the
deploy service (serving processes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    expected_parent = int(os.environ.get("PRIVTUNE_PARENT_PID", "0"))
    sig = getattr(signal, os.environ.get("PRIVTUNE_PARENT_DEATH_SIGNAL", "SIGKILL"), signal.SIGKILL)
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent and os.getppid() != expected_parent:
        os._exit(70)  # the parent died before the death signal was armed
    os.execv(sys.argv[1], sys.argv[1:])


if __name__ == "__main__":
    main()
