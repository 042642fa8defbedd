"""privtune/stop_request.py: a stop that is asked for is seen, and a replica whose stop hangs (its main
thread deadlocked, or a finalizer stuck in the interpreter's shutdown) still ends, with every thread's
stack on stderr (or without stderr)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import faulthandler

import pytest

from privtune.stop_request import StopRequest
from tests.platform_fixtures import wait_until

ROOT = Path(__file__).resolve().parents[2]

# the process under test: asks for a stop on SIGTERM (or when its parent goes), says it is waiting,
# waits for the stop, then hangs in its stop with the main thread deadlocked on a lock it holds
HANGING_STOP = textwrap.dedent("""
    import os, signal, sys, threading
    from privtune.stop_request import StopRequest

    stop = StopRequest(deadline_s=float(sys.argv[1]))
    signal.signal(signal.SIGTERM, stop.request)
    if len(sys.argv) > 2:
        stop.end_with_parent(int(sys.argv[2]), every_s=0.1)
    print("waiting", flush=True)
    stop.wait()
    print("stopping", flush=True)
    held = threading.Lock()
    held.acquire()
    held.acquire()  # a stop that never ends
""")
STUCK_LINE = f'line {HANGING_STOP.splitlines().index("held.acquire()  # a stop that never ends") + 1} in <module>'


def _stopped_by_sigterm(program: str, *args: str) -> tuple[int, str]:
    """Run ``program``, send SIGTERM once it says it is waiting; its exit code and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", program, *args], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "waiting\n"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, err


@pytest.mark.parametrize("stderr", ["open", "closed"])
def test_a_signal_stops_the_wait_and_a_deadlocked_stop_ends_by_its_deadline_with_the_stacks(stderr: str) -> None:
    program = HANGING_STOP if stderr == "open" else HANGING_STOP.replace("stop = StopRequest", "os.close(2)\nstop = StopRequest")
    code, err = _stopped_by_sigterm(program, "3")
    assert code == 1, err
    if stderr == "open":
        assert "Timeout" in err and STUCK_LINE in err, err  # faulthandler names the line the stop is stuck on


def test_a_stop_stuck_in_the_interpreters_shutdown_ends_by_its_deadline() -> None:
    # what a Python daemon thread (the old threading.Timer deadline) cannot end: it no longer runs there
    program = textwrap.dedent("""
        import signal, threading
        from privtune.stop_request import StopRequest

        class Stuck:
            def __del__(self):
                held = threading.Lock()
                held.acquire()
                held.acquire()

        stuck = Stuck()  # finalized when the interpreter shuts down its modules
        stop = StopRequest(deadline_s=3.0)
        signal.signal(signal.SIGTERM, stop.request)
        print("waiting", flush=True)
        stop.wait()
    """)
    code, err = _stopped_by_sigterm(program)
    assert code == 1 and "Timeout" in err and "in __del__" in err, err


def test_without_a_deadline_a_stop_is_a_flag_only(monkeypatch: pytest.MonkeyPatch) -> None:
    armed: list[object] = []  # observed, not replaced: a full process stops its children first, unhurried
    monkeypatch.setattr(faulthandler, "dump_traceback_later", lambda *args, **kwargs: armed.append(args))
    stop = StopRequest(None)
    stop.request()
    stop.wait()
    assert stop.requested and not stop.armed and armed == []


def test_a_process_whose_parent_was_killed_ends_though_its_stop_hangs(tmp_path: Path) -> None:
    # a parent that starts the process under test, then sleeps until it is SIGKILLed (no death signal
    # is armed here: the parent watch alone must notice)
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", {HANGING_STOP!r}, "3", str(os.getpid())],
                                 stderr=open({str(tmp_path / "child.err")!r}, "w"), stdout=subprocess.DEVNULL)
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(600)
    """)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    child = 0
    try:
        wait_until(lambda: pid_file.exists() and pid_file.read_text() != "", timeout=60, what="the child's pid")
        child = int(pid_file.read_text())
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)

        def ended() -> bool:
            try:
                state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return True
            return state == "Z"  # ended, waiting for whoever adopted it to reap it
        wait_until(ended, timeout=60, what="the orphaned child to end")
        err = (tmp_path / "child.err").read_text()
        assert "Timeout" in err and STUCK_LINE in err, err
    finally:
        if parent.poll() is None:
            parent.kill()
        if child:
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(child, signal.SIGKILL)
