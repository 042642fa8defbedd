"""Real infrastructure servers for development and tests, on loopback.

* :class:`privtune.devinfra.kafka.KafkaCluster` -- Apache Kafka 4.3 in KRaft mode,
  1..n combined broker+controller nodes, from jars fetched by
  ``scripts/fetch_kafka.sh``.
* :class:`privtune.devinfra.postgres.PostgresServer` -- a throwaway PostgreSQL
  cluster (``initdb`` + ``postgres``) from the Debian packages.

Both run their servers as child processes that die with the Python process: the
children get ``PR_SET_PDEATHSIG=SIGKILL`` and every running server is stopped at
interpreter exit. This module also holds the small process helpers they share.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DevInfraError",
    "KafkaCluster",
    "PostgresServer",
    "free_port",
    "make_temp_dir",
    "repo_root",
    "tail",
]

_PR_SET_PDEATHSIG = 1


class DevInfraError(RuntimeError):
    """A development server failed to install, start or stop."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def repo_root() -> Path:
    """Return the checkout root (the directory holding ``scripts/``)."""
    return Path(__file__).resolve().parents[2]


def make_temp_dir(prefix: str) -> Path:
    """Create a temporary directory, first removing ``prefix*`` dirs of dead owners.

    A server whose Python parent was SIGKILLed dies with it (PDEATHSIG) but leaves
    its temporary directory; the next start sweeps those up.
    """
    root = Path(tempfile.gettempdir())
    for old in root.glob(f"{prefix}*"):
        try:
            owner = int((old / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if not _pid_alive(owner):
            shutil.rmtree(old, ignore_errors=True)
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # servers running as another user must reach it
    (path / "owner.pid").write_text(str(os.getpid()))
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file, or a note if it is missing."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<no log {path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def child_preexec(uid: int | None = None, gid: int | None = None) -> Callable[[], None]:
    """Build a ``preexec_fn`` that optionally drops to ``uid``/``gid``, then arms
    ``PR_SET_PDEATHSIG=SIGKILL``.

    The death signal is set *after* the credential change because the kernel
    clears it when the uid changes. It fires when the thread that spawned the
    child exits, so start servers from the main thread (pytest fixtures do).
    """
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def spawn(
    argv: list[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    uid: int | None = None,
    gid: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
            preexec_fn=child_preexec(uid, gid),
        )


def terminate(proc: subprocess.Popen[bytes], grace: float, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``proc``; SIGKILL it if it has not exited after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    try:
        proc.send_signal(sig)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except ProcessLookupError:
        proc.wait()


class _Stoppable(Protocol):
    def stop(self) -> None: ...


_running: dict[int, _Stoppable] = {}
_running_lock = threading.Lock()


def register(server: _Stoppable) -> None:
    """Make sure ``server.stop()`` runs at interpreter exit unless stopped before."""
    with _running_lock:
        _running[id(server)] = server


def unregister(server: _Stoppable) -> None:
    """Undo :func:`register` (called by ``stop()``)."""
    with _running_lock:
        _running.pop(id(server), None)


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        servers = list(_running.values())
    for server in servers:
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def __getattr__(name: str) -> Any:
    # Lazy re-exports: importing the package must not import confluent_kafka/psycopg.
    if name == "KafkaCluster":
        from privtune.devinfra.kafka import KafkaCluster

        return KafkaCluster
    if name == "PostgresServer":
        from privtune.devinfra.postgres import PostgresServer

        return PostgresServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
