"""kill -9 a curation process while it writes shards: no curated text is left outside the work folder,
and after a restart the job completes once and its work folder is gone."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import create_engine

from privtune.platform import Platform
from privtune.v1 import curation_config_pb2 as ccpb
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import curation_service_pb2_grpc as cgrpc
from privtune.v1 import dataset_service_pb2 as dpb
from services.common import eventstore
from services.common.config import PlatformConfig
from tests.platform_fixtures import channel, dataset_stub, metadata, put_files, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
WORDS = ("account balance branch card charge claim client credit customer deposit desk fee form fund help invoice "
         "limit loan manager message mobile mortgage notice office online order payment phone plan policy rate "
         "record refund reply report request review savings service statement support team transfer wire agent "
         "answer bank code date email issue letter month name number period reason receipt rule week year").split()


def corpus(canary: str, records: int) -> bytes:
    """Distinct instruction pairs (no duplicates, all pass the quality filters), each carrying ``canary``."""
    r = random.Random(7)

    def words(n: int) -> str:
        return " ".join(r.choice(WORDS) for _ in range(n))

    lines = [json.dumps({
        "instruction": f"Please explain how the {words(3)} works for the {words(2)} of case {i}.", "input": "",
        "output": f"The {words(2)} is handled by the {words(3)} team, and the {words(2)} is sent to the customer "
                  f"within {r.randint(2, 9)} days. Reference {canary}. Then the {words(4)} is closed and the "
                  f"{words(2)} is archived."}) for i in range(records)]
    return ("\n".join(lines) + "\n").encode()


SQLITE_FILES = (".db", ".db-wal", ".db-shm", ".db-journal")


def files_containing(needle: bytes, *roots: Path, skip: Path | None = None) -> list[Path]:
    """Files under ``roots`` holding ``needle``. SQLite databases are left out: opening and closing one
    of their files in a process that has the database open drops that process's POSIX locks on it, and
    another process may then truncate the shared-memory file under it (SIGBUS). The stores are checked
    for private bytes through SQL elsewhere (test_private_bytes.py)."""
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            if skip is not None and Path(dirpath) == skip:
                dirnames[:] = []
                continue
            for name in filenames:
                if name.endswith(SQLITE_FILES):
                    continue
                path = Path(dirpath) / name
                try:
                    if (path.is_file() and not path.is_symlink() and path.stat().st_size < 64 << 20
                            and needle in path.read_bytes()):
                        found.append(path)
                except OSError:
                    continue  # another program's file, gone or unreadable
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CurationProcess:
    """``python -m privtune serve curation curation-worker`` (the curation service and a worker in one
    process) with its own system temp folder (``TMPDIR``), on the session's PKI and token issuer (its
    environment): TLS on the API port, its worker claiming on the component port."""

    def __init__(self, config: PlatformConfig, tmpdir: Path, log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "privtune", "serve", "curation", "curation-worker", "--bus", config.bus_uri,
             "--store", config.store_uri, "--storage", config.storage_root, "--data-dir", str(config.data_dir),
             "--grpc", f"127.0.0.1:{self.port}"],
            cwd=ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmpdir),
                 "PRIVTUNE_COMPONENT_GRPC": f"127.0.0.1:{_free_port()}"})
        self.channel = channel(f"127.0.0.1:{self.port}")
        wait_until(self._serving, timeout=180, what="privtune serve curation")
        self.stub = cgrpc.CurationServiceStub(self.channel)

    def _serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"privtune serve curation exited with {self.proc.returncode}:\n"
                                 f"{self.log.read_text()[-3000:]}")
        try:
            health = health_pb2_grpc.HealthStub(self.channel)
            return health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == \
                health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.channel.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.channel.close()


@pytest.fixture
def ingest(tmp_path: Path) -> Iterator[Platform]:
    """The ingest service in-process (dataset registration and the outbox relay), sharing bus and store."""
    data = tmp_path / "data"
    config = PlatformConfig.from_env(data, grpc_address="127.0.0.1:0",
                                     bus_uri=f"sqlite:///{data}/events.db?session_timeout_ms=3000",
                                     store_uri=f"sqlite:///{data}/privtune.db", storage_root=str(data / "tenants"))
    platform = Platform(config, services=("ingest",)).start()
    yield platform
    platform.stop()


def _job_events(store_uri: str, job_id: str) -> list[str]:
    engine = create_engine(store_uri)
    try:
        with engine.connect() as conn:
            return [env.WhichOneof("payload") for env in eventstore.load_stream(conn, "acme", job_id)]
    finally:
        engine.dispose()


def test_kill9_while_writing_shards_leaves_no_curated_text_outside_the_work_folder(
        ingest: Platform, tmp_path: Path) -> None:
    config = ingest.config
    canary = f"CANARY-{uuid.uuid4().hex[:16]}-KILL9"
    system_tmp = tmp_path / "system-tmp"  # the curation process's tempfile.gettempdir()
    system_tmp.mkdir()
    uri = put_files(ingest, "acme", "public-faq", {"faq.jsonl": corpus(canary, 2500)})
    dataset = dataset_stub(ingest).CreateDataset(dpb.CreateDatasetRequest(
        name="public-faq", storage_uri=uri, classification=1), metadata=metadata(), timeout=30).dataset  # PUBLIC

    first = CurationProcess(config, system_tmp, tmp_path / "curation-1.log")
    try:
        job = first.stub.CreateCurationJob(cpb.CreateCurationJobRequest(
            dataset_id=dataset.dataset_id, config=ccpb.CurationConfig(shard_size=100, redact_pii=False)),
            metadata=metadata(), timeout=30).job
        job_dir = config.work_dir / "acme" / "curation" / job.job_id
        # wait until curated text is on local disk (a full shard of 100 examples), wherever the process puts it
        wait_until(lambda: bool(files_containing(canary.encode(), config.work_dir, system_tmp)), timeout=300,
                   what="the first shard on disk")
        first.kill9()
    finally:
        first.stop()
    assert "dataset_version_created" not in _job_events(config.store_uri, job.job_id), \
        "the job finished before the kill: make the corpus bigger"

    # the shards of the killed attempt: never in the system temp folder, only in the job's work folder
    outside = files_containing(canary.encode(), system_tmp, Path(tempfile.gettempdir()), skip=tmp_path)
    assert outside == [], f"curated text left outside tenant work folders: {outside}"
    assert files_containing(canary.encode(), job_dir), "the killed attempt left no shards in its work folder"
    assert all(p.is_relative_to(job_dir) for p in files_containing(canary.encode(), config.data_dir)
               if not p.is_relative_to(config.storage_path))
    assert oct(job_dir.stat().st_mode & 0o777) == oct(0o700)

    second = CurationProcess(config, system_tmp, tmp_path / "curation-2.log")
    try:
        def finished() -> bool:
            state = second.stub.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id), metadata=metadata(),
                                               timeout=10).job.state
            return state in (cpb.CURATION_JOB_STATE_SUCCEEDED, cpb.CURATION_JOB_STATE_FAILED)
        wait_until(finished, timeout=600, what="the redelivered job to finish")
        done = second.stub.GetCurationJob(cpb.GetCurationJobRequest(job_id=job.job_id), metadata=metadata(),
                                          timeout=10).job
        assert done.state == cpb.CURATION_JOB_STATE_SUCCEEDED, done.reason
    finally:
        second.stop()
    assert _job_events(config.store_uri, job.job_id) == ["curation_requested", "dataset_version_created"]
    assert not job_dir.exists(), f"work folder left behind: {sorted(job_dir.rglob('*'))}"
    assert files_containing(canary.encode(), config.work_dir, system_tmp) == []
    version = config.storage_path / "acme" / "datasets" / dataset.dataset_id / "versions" / done.dataset_version_id
    assert canary.encode() in (version / "train-00000.jsonl").read_bytes()  # public data: the text is kept
