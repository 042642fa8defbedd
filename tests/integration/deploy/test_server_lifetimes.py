"""No serving process outlives what started it: a parent killed with SIGKILL takes its servers along (even
servers started from a thread that has ended since), and ``stop()`` ends a server's own children too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Sequence

import pytest

from services.deploy.backends import HttpBackendProcess

pytestmark = pytest.mark.integration


class StaticServer(HttpBackendProcess):
    """A stand-in server answering /health and /v1/models (files under ``root``), optionally with a child."""

    kind = "static"

    def __init__(self, root: Path, log: Path, child_pid_file: Path | None = None) -> None:
        super().__init__("static", log)
        self.root = root
        self.child_pid_file = child_pid_file
        (root / "v1").mkdir(parents=True, exist_ok=True)
        (root / "health").write_text("ok")
        (root / "v1" / "models").write_text('{"data": []}')

    def command(self) -> Sequence[str]:
        serve = [sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1", "--directory",
                 str(self.root)]
        if self.child_pid_file is None:
            return serve
        # a server that starts a child of its own (as vLLM starts its engine core), then serves
        script = (f"import subprocess, os, sys; c = subprocess.Popen(['sleep', '600']); "
                  f"open({str(self.child_pid_file)!r}, 'w').write(str(c.pid)); os.execv(sys.executable, {serve!r})")
        return [sys.executable, "-c", script]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by its new parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_stop_ends_the_server_and_the_processes_it_started(tmp_path: Path) -> None:
    server = StaticServer(tmp_path / "www", tmp_path / "server.log", tmp_path / "child.pid")
    server.start(timeout=60)
    child = int((tmp_path / "child.pid").read_text())
    assert server.proc is not None and _alive(server.proc.pid) and _alive(child)
    server.stop()
    assert _wait_gone(server.proc.pid) and _wait_gone(child)


def test_a_parent_killed_with_sigkill_takes_its_servers_along(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    parent = textwrap.dedent(f"""
        import sys, threading, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[3])!r})
        from tests.integration.deploy.test_server_lifetimes import StaticServer
        server = StaticServer(Path({str(tmp_path / 'www')!r}), Path({str(tmp_path / 'server.log')!r}))
        starter = threading.Thread(target=server.start, kwargs={{"timeout": 60}})  # a short-lived thread
        starter.start(); starter.join()
        Path({str(pid_file)!r}).write_text(str(server.proc.pid))
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", parent])
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        server_pid = int(pid_file.read_text())
        time.sleep(0.5)
        assert _alive(server_pid)  # the thread that started it has ended: the server lives on
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _wait_gone(server_pid)  # ... until its parent dies
    finally:
        if proc.poll() is None:
            proc.kill()
