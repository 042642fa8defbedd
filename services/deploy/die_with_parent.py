"""Run a command that dies with the process that started it:

    python services/deploy/die_with_parent.py PARENT_PID COMMAND [ARG...]

sets ``PR_SET_PDEATHSIG`` (SIGTERM) on itself, checks the parent is still ``PARENT_PID`` (it may have
died already), then execs the command, which keeps the setting. Serving processes are started through
it rather than with a ``preexec_fn``: a ``preexec_fn`` makes Python fork the whole process, and a fork
of a process whose threads are inside gRPC can corrupt its TLS connections; without one, Python starts
the child with ``vfork``, which runs nothing of the parent's before the exec.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: die_with_parent.py PARENT_PID COMMAND [ARG...]", file=sys.stderr)
        return 2
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        print(f"prctl(PR_SET_PDEATHSIG) failed: errno {ctypes.get_errno()}", file=sys.stderr)
        return 1
    if os.getppid() != int(argv[0]):  # the parent died before the setting took effect
        return 0
    os.execvp(argv[1], argv[1:])
    return 1  # not reached


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
