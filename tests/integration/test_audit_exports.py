"""The platform's audit exports: every record reaches a real rsyslog over RELP/TLS (acknowledged) and the
privtune.audit topic as valid OCSF, across a restart of the platform and of rsyslog; each record id at
least once, none missing; a canary planted in tenant files appears in no record, segment or export."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest

from privtune.platform import Platform
from privtune.v1 import dataset_service_pb2 as dpb
from services.audit import log_store
from services.audit.siem.ocsf import validate_ocsf
from services.common.bus import open_bus
from services.common.topics import AUDIT
from tests.platform_fixtures import dataset_stub, metadata, register, start_platform, wait_until
from tests.syslog_receiver import SyslogReceiver, syslog_receiver  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
CANARY = "CANARY-a41d-export-SSN-219-09-9999"
_RECORD_ID = re.compile(rb'record_id="([^"]+)"')


def _exports(receiver: SyslogReceiver) -> str:
    c = receiver.certs
    return f"kafka,relp://{receiver.host}:{receiver.relp_port}?ca={c.ca}&cert={c.client_cert}&key={c.client_key}" \
           "&name=siem&format=ocsf"


def _start(data_dir: Path, receiver: SyslogReceiver) -> Platform:
    return start_platform(data_dir, audit_exports=_exports(receiver), audit_seal_ms=200, audit_seal_records=25)


def _record_ids(platform: Platform) -> set[str]:
    assert platform.engine is not None
    with platform.engine.connect() as conn:
        return {r.record_id for _, r in log_store.records_after_position(conn, 0, 10**6)}


def _topic(platform: Platform) -> list[tuple[dict[str, bytes], bytes]]:
    bus = open_bus(platform.config.bus_uri)
    try:
        sub = bus.subscribe(f"check-{uuid.uuid4().hex}", [AUDIT], from_beginning=True)
        out = []
        while True:
            batch = sub.poll(max_records=1000, timeout=0.5)
            if not batch:
                return out
            out.extend((r.headers, r.value) for r in batch)
    finally:
        bus.close()


def _activity(platform: Platform, n: int, tag: str) -> None:
    stub = dataset_stub(platform)
    files = {"tickets.jsonl": f'{{"q": "my ssn is {CANARY}", "a": "noted"}}\n'.encode() * 20}
    register(stub, platform, "acme", f"tickets-{tag}", files)
    for _ in range(n):
        stub.ListDatasets(dpb.ListDatasetsRequest(), metadata=metadata("acme"), timeout=30)


def test_exports_deliver_every_record_across_restarts(syslog_receiver: SyslogReceiver,  # noqa: F811
                                                      tmp_path: Path) -> None:
    receiver = syslog_receiver
    data_dir = tmp_path / "data"
    platform = _start(data_dir, receiver)
    try:
        _activity(platform, 30, "one")
        wait_until(lambda: len(_record_ids(platform)) >= 32, timeout=60, what="the first records")
    finally:
        platform.stop()  # the exports may be anywhere in the log: they resume from their cursors
    receiver.restart()
    platform = _start(data_dir, receiver)
    try:
        _activity(platform, 30, "two")

        def delivered() -> bool:
            ids = _record_ids(platform)
            relp = {m.decode() for line in receiver.received("relp") for m in _RECORD_ID.findall(line)}
            kafka = {h["x-record-id"].decode() for h, _ in _topic(platform)}
            return len(ids) >= 64 and ids <= relp and ids <= kafka
        wait_until(delivered, timeout=120, what="every audit record at rsyslog (RELP) and on privtune.audit")
        ids = _record_ids(platform)
        for headers, value in _topic(platform):
            event = json.loads(value)
            validate_ocsf(event)
            assert event["metadata"]["uid"] == headers["x-record-id"].decode()
        assert len(ids) >= 64
        wait_until(lambda: all(s.size == s.sealed_size for s in _chains(platform)), timeout=60, what="sealing")
    finally:
        platform.stop()
    canary = CANARY.encode()
    for line in receiver.received("relp"):
        assert canary not in line
    for _, value in _topic_after_stop(data_dir):
        assert canary not in value
    for segment in (data_dir / "audit" / "segments").rglob("*"):
        if segment.is_file():
            assert canary not in segment.read_bytes(), segment
    for db in data_dir.glob("privtune.db*"):
        assert canary not in db.read_bytes(), db


def _chains(platform: Platform) -> list[log_store.ChainState]:
    assert platform.engine is not None
    with platform.engine.connect() as conn:
        return log_store.chain_states(conn)


def _topic_after_stop(data_dir: Path) -> list[tuple[dict[str, bytes], bytes]]:
    bus = open_bus(f"sqlite:///{data_dir}/events.db")
    try:
        sub = bus.subscribe("canary-check", [AUDIT], from_beginning=True)
        out = []
        while batch := sub.poll(max_records=1000, timeout=0.5):
            out.extend((r.headers, r.value) for r in batch)
        return out
    finally:
        bus.close()
