"""SIEM export to a real rsyslog: RELP over TLS (acknowledged, resumable) and RFC 5425 syslog over TLS.

The RELP test exports a few hundred audit records through an exporter process that is
killed (SIGKILL) part-way, then a new exporter with the same cursor file, while rsyslog
restarts mid-stream; every record must arrive, byte for byte, at least once. See
tests/syslog_receiver.py for the receiver.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from services.audit import chain
from services.audit.chain import AuditRecord
from services.audit.siem.exporter import DeliveryError, Exporter, RelpSink
from services.audit.siem.relp import RelpClient, RelpError
from services.audit.siem.syslog import Body, TlsSyslogSender, format_rfc5424
from services.common.supervision import LoopStatus
from tests.syslog_receiver import SyslogReceiver, syslog_receiver  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RECORDS = 300
HOSTNAME = "audit-test"
KINDS = ("rpc.allowed", "rpc.denied", "auth.failed", "break_glass.used", "dataset.registered", "training.completed",
         "checkpoint.saved", "model.alias_moved", "data.mounted", "audit.read")


def audit_log(tenant: str, n: int = RECORDS) -> list[tuple[int, AuditRecord]]:
    """A deterministic tenant log of ``n`` records, at positions 1..n, with awkward values in them."""
    out: list[tuple[int, AuditRecord]] = []
    prev = None
    for i in range(n):
        prev = chain.append(
            prev, tenant_id=tenant, record_id=f"{tenant}-evt-{i:04d}", time_ms=1_700_000_000_000 + i * 1000,
            kind=KINDS[i % len(KINDS)], actor=["alice", "bøb \"the\" [admin]", "system", ""][i % 4],
            resource=f"dataset/ds-{i % 7}", outcome=["allowed", "denied", "succeeded", "failed"][i % 4],
            correlation_id=f"corr-{i // 10}",
            attributes={"method": "/privtune.v1.DatasetService/GetDataset", "rows": str(i),
                        "note": "pipe| eq= back\\ bracket] 漢字" if i % 5 == 0 else "plain"})
        out.append((i + 1, prev))
    return out


def encoder(body: Body = "ocsf") -> functools.partial[bytes]:
    return functools.partial(format_rfc5424, hostname=HOSTNAME, body=body)


class CursorFile:
    """A cursor store in a file, replaced atomically (what a crashed exporter leaves is what the next one reads)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> int:
        return int(self.path.read_text()) if self.path.exists() else 0

    def save(self, position: int) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(position))
        os.replace(tmp, self.path)


# The first exporter, in its own process so it can be killed: slow enough (a short pause per
# fetch) that the kill lands part-way through the log.
_EXPORTER_PROCESS = """
import ssl, sys, threading, time
from tests.integration.test_siem_delivery import CursorFile, audit_log, encoder
from services.audit.siem.exporter import Exporter, RelpSink
from services.audit.siem.relp import RelpClient
host, port, ca, cert, key, cursor, tenant = sys.argv[1:]
context = ssl.create_default_context(cafile=ca)
context.load_cert_chain(cert, key)
log = audit_log(tenant)
def fetch(after, limit):
    time.sleep(0.02)
    return [(p, r) for p, r in log if p > after][:limit]
store = CursorFile(__import__("pathlib").Path(cursor))
client = RelpClient(host, int(port), context, window=4, timeout=10)
Exporter("siem-relp-first", fetch, RelpSink(client, encoder()), store.load, store.save, batch_size=5).run(
    threading.Event())
"""


def _messages_of(receiver: SyslogReceiver, input_name: str, tenant: str) -> list[bytes]:
    marker = f' tenant="{tenant}" '.encode()
    return [m for m in receiver.received(input_name) if marker in m]


def _wait_until(condition: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_relp_delivers_every_record_across_an_exporter_crash_and_an_rsyslog_restart(
        syslog_receiver: SyslogReceiver, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    receiver, tenant = syslog_receiver, "relp-crash"
    log = audit_log(tenant)
    store = CursorFile(tmp_path / "cursor")
    certs = receiver.certs

    # 1. an exporter process, SIGKILLed once it has delivered a hundred records or so
    errors = tmp_path / "exporter.stderr"
    with open(errors, "w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", _EXPORTER_PROCESS, receiver.host, str(receiver.relp_port),
                                  str(certs.ca), str(certs.client_cert), str(certs.client_key), str(store.path),
                                  tenant], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=stderr)
    try:
        _wait_until(lambda: store.load() >= 100 or child.poll() is not None, "the first exporter to reach 100")
        assert child.poll() is None, f"the first exporter died by itself:\n{errors.read_text()[-3000:]}"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    killed_at = store.load()
    assert 100 <= killed_at < RECORDS

    # 2. a new exporter resumes from the cursor file; rsyslog restarts once it reaches 220
    gate = threading.Event()

    def fetch(after: int, limit: int) -> list[tuple[int, AuditRecord]]:
        last = RECORDS if gate.is_set() else max(220, killed_at)
        return [(p, r) for p, r in log if after < p <= last][:limit]

    client = RelpClient(receiver.host, receiver.relp_port, receiver.client_context(), window=16, timeout=10)
    exporter = Exporter("siem-relp-second", fetch, RelpSink(client, encoder()), store.load, store.save,
                        batch_size=25, idle_seconds=0.02)
    stop, status = threading.Event(), LoopStatus("siem-relp-second")
    thread = threading.Thread(target=exporter.run, args=(stop,), kwargs={"status": status, "max_backoff": 1.0},
                              daemon=True)
    thread.start()
    try:
        _wait_until(lambda: store.load() >= max(220, killed_at), "the second exporter to reach 220")
        receiver.restart()
        gate.set()
        _wait_until(lambda: store.load() == RECORDS, f"the export to finish ({status.last_error})")
    finally:
        stop.set()
        thread.join(timeout=30)
        client.close()

    expected = {record.record_id: encoder()(record) for _, record in log}
    # acknowledged means written (rsyslog's queue is Direct); polling only absorbs file buffering
    _wait_until(lambda: set(expected.values()) <= set(_messages_of(receiver, "relp", tenant)),
                "every acknowledged record in rsyslog's file", timeout=30)
    received = _messages_of(receiver, "relp", tenant)
    counts = Counter(received)
    missing = [rid for rid, message in expected.items() if counts[message] == 0]
    assert not missing, f"{len(missing)} records never arrived, e.g. {missing[:5]}"
    assert set(counts) == set(expected.values())  # and nothing arrived changed
    assert len(received) >= RECORDS


def test_relp_to_a_stopped_receiver_fails_clearly_and_saves_nothing(
        syslog_receiver: SyslogReceiver) -> None:  # noqa: F811 - the fixture
    receiver, tenant = syslog_receiver, "relp-down"
    log = audit_log(tenant, 20)
    position = {"cursor": 0}
    client = RelpClient(receiver.host, receiver.relp_port, receiver.client_context(), timeout=5)
    exporter = Exporter("siem-relp-down", lambda after, limit: [(p, r) for p, r in log if p > after][:limit],
                        RelpSink(client, encoder("cef")), lambda: position["cursor"],
                        lambda p: position.__setitem__("cursor", p), batch_size=10)
    assert exporter.step() == 10
    receiver.stop()
    try:
        with pytest.raises(DeliveryError, match=f"{receiver.host}:{receiver.relp_port}") as info:
            exporter.step()
        assert info.value.acknowledged == 0 and position["cursor"] == 10
    finally:
        receiver.start()
    assert exporter.step() == 10 and position["cursor"] == 20
    client.close()
    messages = set(_messages_of(receiver, "relp", tenant))
    assert {encoder("cef")(r) for _, r in log} <= messages


def test_relp_without_a_client_certificate_is_refused(syslog_receiver: SyslogReceiver) -> None:  # noqa: F811
    client = RelpClient(syslog_receiver.host, syslog_receiver.relp_port,
                        syslog_receiver.client_context(with_certificate=False), timeout=5)
    with pytest.raises(RelpError) as info:
        client.send([encoder()(audit_log("relp-anon", 1)[0][1])])
    assert info.value.acknowledged == 0


def test_rfc5425_tls_syslog_arrives_intact_and_survives_a_receiver_restart(
        syslog_receiver: SyslogReceiver) -> None:  # noqa: F811 - the fixture
    receiver, tenant = syslog_receiver, "tls-syslog"
    records = [r for _, r in audit_log(tenant, 90)]
    bodies: list[Body] = ["cef", "ocsf", "json"]
    sent = [encoder(body)(r) for r, body in zip(records, bodies * 30)]
    with TlsSyslogSender(receiver.host, receiver.tls_port, receiver.client_context()) as sender:
        assert sender.send(sent[:60]) == 60
        _wait_until(lambda: len(_messages_of(receiver, "tls", tenant)) >= 60, "the first 60 messages")
        receiver.restart()  # the sender finds its connection closed and opens a new one
        assert sender.send(sent[60:]) == 30
        _wait_until(lambda: len(_messages_of(receiver, "tls", tenant)) >= 90, "all 90 messages")
    assert _messages_of(receiver, "tls", tenant) == sent  # in order, byte for byte, non-ASCII included
