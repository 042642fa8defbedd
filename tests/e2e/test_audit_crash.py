"""kill -9 the platform (its audit service with it) while calls and events stream into the audit log,
restart it on the same data folder: the chain continues without a gap or a duplicate, every event
the store committed has its record, and `privtune audit verify` passes on the sealed segments."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from privtune.v1 import dataset_service_pb2 as dpb
from privtune.v1 import dataset_service_pb2_grpc as dgrpc
from tests.platform_fixtures import wait_until
from tests.server_process import ROOT, ServerProcess, start_server

pytestmark = pytest.mark.e2e
AUDIT_ENV = {"PRIVTUNE_AUDIT_SEAL_MS": "300", "PRIVTUNE_AUDIT_SEAL_RECORDS": "40"}


def _query(data_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{data_dir / 'privtune.db'}?mode=ro", uri=True, timeout=30) as db:
        return db.execute(sql).fetchall()


def _audited(data_dir: Path) -> int:
    try:
        return _query(data_dir, "SELECT count(*) FROM audit_records")[0][0]
    except sqlite3.OperationalError:  # not migrated yet, or busy
        return 0


def _caller(server: ServerProcess, stop: threading.Event, calls: list[int]) -> None:
    """Keep the API busy: every call is an access record, every registration an event too."""
    md = server.metadata("acme", "alice")
    with server.channel() as channel:
        stub = dgrpc.DatasetServiceStub(channel)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if n % 10 == 0:
                    uri = server.put_files("acme", f"set-{n}", {"a.jsonl": b'{"prompt": "p", "completion": "c"}\n'})
                    stub.CreateDataset(dpb.CreateDatasetRequest(name=f"set-{n}", storage_uri=uri, classification=2),
                                       metadata=md, timeout=10)
                else:
                    stub.ListDatasets(dpb.ListDatasetsRequest(page_size=1), metadata=md, timeout=10)
                calls.append(n)
            except grpc.RpcError:
                if stop.is_set():
                    return
                stop.wait(0.05)  # the server is being killed or is restarting


def test_kill_9_mid_stream_leaves_a_continuous_verifiable_chain(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir, env=AUDIT_ENV)
    stop, calls = threading.Event(), []
    try:
        worker = threading.Thread(target=_caller, args=(server, stop, calls), daemon=True)
        worker.start()
        wait_until(lambda: _audited(data_dir) >= 150, timeout=120, what="150 audit records before the kill")
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        before = _audited(data_dir)
        stop.set()
        worker.join(timeout=30)

        server = start_server(data_dir, env=AUDIT_ENV)
        stop, calls = threading.Event(), []
        worker = threading.Thread(target=_caller, args=(server, stop, calls), daemon=True)
        worker.start()
        wait_until(lambda: _audited(data_dir) >= before + 100, timeout=120, what="100 more records after restart")
        stop.set()
        worker.join(timeout=30)

        def caught_up() -> bool:  # every committed event has its record, and everything is sealed
            missing = _query(data_dir, "SELECT count(*) FROM stored_events e WHERE NOT EXISTS (SELECT 1 FROM "
                                       "audit_records r WHERE r.record_id = e.event_id)")[0][0]
            unsealed = _query(data_dir, "SELECT count(*) FROM audit_chains WHERE size != sealed_size")[0][0]
            return missing == 0 and unsealed == 0
        wait_until(caught_up, timeout=120, what="the audit log to hold every committed event, sealed")
    finally:
        stop.set()
        server.stop()
    rows = _query(data_dir, "SELECT tenant_id, seq, record_id FROM audit_records ORDER BY tenant_id, seq")
    by_tenant: dict[str, list[int]] = {}
    for tenant, seq, _ in rows:
        by_tenant.setdefault(tenant, []).append(seq)
    for tenant, seqs in by_tenant.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{tenant}'s chain has a gap or a repeat"
    ids = [(tenant, record_id) for tenant, _, record_id in rows]
    assert len(ids) == len(set(ids)), "a record id appears twice in one log"
    verify = subprocess.run([sys.executable, "-m", "privtune", "audit", "verify", "--data-dir", str(data_dir)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "acme: OK" in verify.stdout
