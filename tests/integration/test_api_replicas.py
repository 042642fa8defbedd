"""``privtune serve --api-processes N``: several server processes behind one port (issue 17).

The kernel spreads new connections over every process bound with SO_REUSEPORT: with 24 client
connections, both processes hold some (all on one of two has odds 2^-23), every call answers, a
write through one process is read through the other, and the replica dies with its parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from privtune.v1 import training_service_pb2 as pb
from privtune.v1 import training_service_pb2_grpc as pb_grpc
from tests.orchestrator_fixtures import job_request, register_version
from tests.platform_fixtures import channel, metadata, wait_until
from tests.training_fixtures import make_models

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CONNECTIONS = 24


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the orphan guard execs the replica, so it keeps the pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def _state(pid: int) -> str:
    """The process's state letter (``Z``: ended, not yet reaped), or "" once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _threads(pid: int) -> list[str]:
    """Each thread of ``pid``: name, state and the kernel function it sleeps in."""
    found = []
    for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
        try:
            found.append(f"{(task / 'comm').read_text().strip()} {_state(int(task.name))} {(task / 'wchan').read_text()}")
        except OSError:
            continue
    return found


def _established(pid: int, port: int) -> int:
    """Established TCP connections of ``pid`` whose local port is ``port``."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_two_processes_share_the_port_and_the_replica_dies_with_its_parent(tmp_path: Path) -> None:
    make_models(tmp_path / "models")
    port = _free_port()
    log = tmp_path / "serve.log"
    store = f"sqlite:///{tmp_path}/privtune.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "privtune", "serve", "orchestrator", "--api-processes", "2", "--data-dir",
         str(tmp_path), "--store", store, "--bus", f"sqlite:///{tmp_path}/events.db", "--grpc", f"127.0.0.1:{port}"],
        cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PRIVTUNE_COMPONENT_GRPC": f"127.0.0.1:{_free_port()}"})
    channels: list[grpc.Channel] = []
    replica = 0
    try:
        def replica_serving() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"privtune serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            return len(_children(proc.pid)) == 1 and log.read_text().count(" running; ") == 2  # both started
        wait_until(replica_serving, timeout=180, what="privtune serve with an API replica")
        (replica,) = _children(proc.pid)
        assert "--api-only" in Path(f"/proc/{replica}/cmdline").read_bytes().decode(errors="replace")

        from sqlalchemy import create_engine
        engine = create_engine(store)
        version = register_version(engine, f"file://{tmp_path}/tenants")
        engine.dispose()
        def serving(ch: grpc.Channel, name: str = "") -> bool:
            try:
                return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=name),
                                                            timeout=5).status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False

        for _ in range(CONNECTIONS):  # each channel is its own TCP connection
            ch = channel(f"127.0.0.1:{port}")
            wait_until(lambda ch=ch: serving(ch), timeout=60, what="a connection's health check")
            # the replica runs no consumers, yet answers the read models' health names (from its parent)
            wait_until(lambda ch=ch: serving(ch, "privtune.projection.tracker.run_view"), timeout=60,
                       what="a connection's read-model health check")
            channels.append(ch)
        stubs = [pb_grpc.TrainingServiceStub(ch) for ch in channels]
        created = [stubs[i].CreateTrainingJob(job_request(version, name=f"r-{i}"), metadata=metadata("acme"),
                                              timeout=60) for i in range(0, CONNECTIONS, 6)]
        for i, stub in enumerate(stubs):  # every process reads every write, whichever process made it
            page = stub.ListTrainingJobs(pb.ListTrainingJobsRequest(min_position=created[-1].position),
                                         metadata=metadata("acme"), timeout=30)
            assert {c.job.job_id for c in created} <= {j.job_id for j in page.jobs}, f"connection {i}"
        held = {pid: _established(pid, port) for pid in (proc.pid, replica)}
        assert all(held.values()) and sum(held.values()) == CONNECTIONS, held

        os.kill(proc.pid, signal.SIGKILL)  # no chance to stop it: the orphan guard's death signal must
        proc.wait(30)
        try:
            wait_until(lambda: _state(replica) in ("", "Z"), timeout=120, what="the API replica to end with its parent")
        except AssertionError as exc:  # say where it is: its threads' states and its log (stacks, if it dumped them)
            raise AssertionError(f"{exc}; its threads: {_threads(replica)}\n{log.read_text()[-6000:]}") from None
        if "Timeout (" in log.read_text():  # it ended, but by its deadline: its stop hung (the stacks say where)
            warnings.warn(f"the API replica's stop hung until its deadline:\n{log.read_text()[-6000:]}")
    finally:
        if replica and _state(replica) not in ("", "Z"):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                os.kill(replica, signal.SIGKILL)
        for ch in channels:
            ch.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
