"""Run `privtune up` as a child process, for tests whose client is another program (Java, Go).

``running_server(data_dir)`` starts every service on the embedded defaults under ``data_dir``
(SQLite bus and store, tenant storage in ``data_dir/tenants``) on a free loopback port, over TLS
(its own CA under ``data_dir/pki``, its development token issuer under ``data_dir/auth``), waits until its gRPC health check says SERVING, and stops it with SIGTERM
afterwards. The ``privtune_server`` fixture does the same per test::

    from tests.server_process import ServerProcess, privtune_server  # noqa: F401 - fixture

    def test_x(privtune_server: ServerProcess) -> None:
        uri = privtune_server.put_files("acme", "support", {"data.jsonl": b"..."})
        subprocess.run([..., "--target", privtune_server.target, "--storage-uri", uri,
                        "--ca", str(privtune_server.ca_path), "--token", privtune_server.token("acme", "me")],
                       timeout=300)

The child ignores the caller's PRIVTUNE_* environment, so it never reaches a shared Kafka or
PostgreSQL by accident; its output goes to ``data_dir/privtune-up.log`` (see ``log_tail``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ServerProcess:
    """A running `privtune up`: where to call it and where its tenants' files live."""

    process: subprocess.Popen[bytes]
    target: str         # host:port of its gRPC API
    data_dir: Path
    storage_path: Path  # tenant T's files live in storage_path / T
    log_path: Path

    @property
    def ca_path(self) -> Path:
        """The local CA's certificate: what clients trust."""
        return self.data_dir / "pki" / "ca.pem"

    def token(self, tenant: str, actor: str, roles: tuple[str, ...] = ("ml-engineer",)) -> str:
        """A bearer token from the server's development issuer."""
        from services.common.auth.tokens import DevIssuer

        return DevIssuer(self.data_dir / "auth").mint(tenant, actor, roles)

    def metadata(self, tenant: str, actor: str = "alice",
                 roles: tuple[str, ...] = ("viewer", "ml-engineer")) -> list[tuple[str, str]]:
        """Call metadata of a person of ``tenant``: a bearer token."""
        return [("authorization", f"Bearer {self.token(tenant, actor, roles)}")]

    def channel(self) -> grpc.Channel:
        """A channel to its API: TLS trusting its CA."""
        return grpc.secure_channel(self.target, grpc.ssl_channel_credentials(self.ca_path.read_bytes()))

    def put_files(self, tenant: str, folder: str, files: dict[str, bytes]) -> str:
        """Write files into the tenant's storage and return the folder's file:// URI."""
        root = self.storage_path / tenant / folder
        for name, data in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(data)
        return f"file://{root}"

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output, to put in a failing assertion's message."""
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(server: ServerProcess) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"privtune up exited with status {server.process.returncode} before serving; "
                             f"its log ({server.log_path}):\n{server.log_tail()}")
    if not server.ca_path.exists():
        return False
    with server.channel() as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def start_server(data_dir: Path, startup_timeout: float = 180.0,
                 env: dict[str, str] | None = None) -> ServerProcess:
    """Start `privtune up` on the embedded defaults under ``data_dir`` and wait until it serves."""
    data_dir.mkdir(parents=True, exist_ok=True)
    storage = data_dir / "tenants"
    log_path = data_dir / "privtune-up.log"
    target = f"127.0.0.1:{free_port()}"
    extra = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIVTUNE_")}
    # the component port too: the default (API port + 1) may be taken by a client's ephemeral port
    env["PRIVTUNE_COMPONENT_GRPC"] = f"127.0.0.1:{free_port()}"
    env.update(extra)  # what the test asks for (e.g. PRIVTUNE_AUDIT_SEAL_MS)
    env["PYTHONPATH"] = str(ROOT)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "privtune", "up", "--data-dir", str(data_dir), "--storage", str(storage),
             "--grpc", target],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(process, target, data_dir, storage, log_path)
    deadline = time.monotonic() + startup_timeout
    try:
        while not _serving(server):
            if time.monotonic() > deadline:
                raise AssertionError(f"privtune up on {target} did not report SERVING within "
                                     f"{startup_timeout:.0f}s; its log:\n{server.log_tail()}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_server(data_dir: Path) -> Iterator[ServerProcess]:
    """``start_server``, then stop it (SIGTERM) when the block ends."""
    server = start_server(data_dir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def privtune_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """`privtune up` in a child process with its data in the test's tmp_path."""
    with running_server(tmp_path / "privtune") as server:
        yield server
