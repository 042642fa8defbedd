"""A real S3 API server for tests: moto's server mode on loopback, started lazily.

The server (``moto.server.ThreadedMotoServer`` on ``127.0.0.1``, a free port) runs in
a child process, so its memory does not count in the tests' tracemalloc figures, and
it exits with the test session (it stops when its stdin closes, even if pytest is killed).

    s3_server   session: an ``S3Server``; ``s3_server.root_uri(bucket)`` is a storage root
                such as ``s3://<bucket>/tenants?endpoint_url=http://127.0.0.1:PORT``.
    s3_bucket   function: a fresh, empty bucket name on that server.

Use them from a test module with ``from tests.s3_fixtures import s3_bucket, s3_server``.
While the server runs, the AWS_* credential variables point at dummy test credentials.
"""

from __future__ import annotations

import functools
import os
import selectors
import subprocess
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

_SERVER_SCRIPT = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # serve until the parent closes our stdin (or dies)
server.stop()
"""
_START_TIMEOUT_S = 60.0
_TEST_ENV = {"AWS_ACCESS_KEY_ID": "privtune-test", "AWS_SECRET_ACCESS_KEY": "privtune-test",
             "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
_CLEARED_ENV = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    @functools.cached_property
    def _client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url, region_name="us-east-1")

    def client(self) -> Any:
        """A boto3 S3 client for this server (shared; boto3 clients are thread-safe)."""
        return self._client

    def create_bucket(self, name: str | None = None) -> str:
        bucket = name or f"privtune-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=bucket)
        return bucket

    def root_uri(self, bucket: str, prefix: str = "tenants") -> str:
        """A storage root on this server: tenant T lives in ``s3://bucket/prefix/T/``."""
        return f"s3://{bucket}/{prefix}?endpoint_url={self.endpoint_url}"


def _read_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=_START_TIMEOUT_S):
            raise RuntimeError(f"moto S3 server did not start within {_START_TIMEOUT_S:.0f}s")
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f"moto S3 server failed to start (exit code {proc.poll()}); run it by hand: "
                           f"{sys.executable} -c 'from moto.server import ThreadedMotoServer'")
    return int(line)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 API on 127.0.0.1 for the whole session, with dummy AWS credentials set."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        port = _read_port(proc)
        with pytest.MonkeyPatch.context() as env:
            for name in _CLEARED_ENV:
                env.delenv(name, raising=False)
            for name, value in _TEST_ENV.items():
                env.setenv(name, value)
            yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new empty bucket on the session's server."""
    return s3_server.create_bucket()
