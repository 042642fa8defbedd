"""A curation job longer than the bus session timeout runs once, with another worker waiting in the group."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import Message, open_bus
from services.common.errors import Busy
from services.common.envelope import Causation, new_envelope
from services.common.store import open_store
from services.common.topics import CURATION_EVENTS
from services.curation import domain
from services.curation.application import SOURCE, STREAM_TYPE
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator
from services.curation.worker import CurationWorker
from tests.platform_fixtures import wait_until

pytestmark = pytest.mark.integration
SESSION_TIMEOUT_MS = 1500


class Runs:
    """A test hook around the real pipeline: counts runs and keeps the first one busy past the session
    timeout (until a second run starts, which is the failure, or four session timeouts went by)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.second = threading.Event()
        self.lock = threading.Lock()

    def curator(self, config: CurationConfig, salt: str) -> Curator:
        runs = self

        class SlowCurator(Curator):
            def run(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
                with runs.lock:
                    runs.started.append(threading.current_thread().name)
                    if len(runs.started) > 1:
                        runs.second.set()
                runs.second.wait(timeout=4 * SESSION_TIMEOUT_MS / 1000)
                return super().run(*args, **kwargs)

        return SlowCurator(config, salt)


def _request_job(engine, bus, storage: Path) -> str:  # type: ignore[no-untyped-def]
    folder = storage / "acme" / "faq"
    folder.mkdir(parents=True)
    (folder / "faq.jsonl").write_text("\n".join(json.dumps({
        "prompt": f"How do I order replacement card number {i} for my savings account?",
        "completion": f"Open the app, choose Cards, then Replace card {i}; it arrives within five business days."})
        for i in range(5)) + "\n")
    job_id = f"cj-{uuid.uuid4().hex[:24]}"
    config = CurationConfig(redact_pii=False)
    env = new_envelope(events_pb2.CurationRequested(
        job_id=job_id, dataset_id="ds-0123456789ab", recipe=config.recipe, config_json=config.canonical_json(),
        config_sha256=config.sha256(), dataset_storage_uri=folder.as_uri(), dataset_checksum_sha256="0" * 64,
        dataset_classification=events_pb2.DATA_CLASSIFICATION_PUBLIC),
        subject=job_id, tenant_id="acme", source=SOURCE, causation=Causation("alice", "corr-keepalive"))
    with engine.begin() as conn:
        eventstore.append(conn, STREAM_TYPE, [env], expected_version=0)
    bus.publish([Message(CURATION_EVENTS, job_id.encode(), codec.encode(env))])
    return job_id


def test_a_job_longer_than_the_session_timeout_is_not_run_again_by_another_member(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=1&session_timeout_ms={SESSION_TIMEOUT_MS}")
    bus.ensure_topics([CURATION_EVENTS])
    runs = Runs()
    storage = tmp_path / "tenants"
    workers = [CurationWorker(engine, bus, storage.as_uri(), b"k" * 32, tmp_path / "work", curator=runs.curator)
               for _ in range(2)]  # two members of group curation.worker
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), name=f"member-{i}") for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    try:
        job_id = _request_job(engine, bus, storage)

        def state() -> domain.CurationJobState:
            with engine.connect() as conn:
                return domain.fold(eventstore.load_stream(conn, "acme", job_id))
        wait_until(lambda: state().finished, timeout=120, what="the job to finish")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for w in workers:
            w.close()
    assert state().state == cpb.CURATION_JOB_STATE_SUCCEEDED, state().reason
    assert len(runs.started) == 1, f"the job ran {len(runs.started)} times, on {runs.started}"
    assert "finished by another worker" not in caplog.text and "cannot commit" not in caplog.text
    assert not (tmp_path / "work" / "acme" / "curation" / job_id).exists()
    bus.close()
    engine.dispose()


def test_a_job_delivered_to_two_workers_at_once_is_curated_once(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Worker B gets the same request while worker A still curates it (a session lapse, a re-send):
    B loses the claim (the job's lease) and does nothing; A's outcome is recorded once."""
    caplog.set_level(logging.INFO)
    engine = open_store(f"sqlite:///{tmp_path}/store.db")
    bus = open_bus(f"sqlite:///{tmp_path}/events.db?partitions=1")
    runs = Runs()
    storage = tmp_path / "tenants"
    a, b = (CurationWorker(engine, bus, storage.as_uri(), b"k" * 32, tmp_path / "work", curator=runs.curator,
                           lease_ms=1500) for _ in range(2))
    job_id = _request_job(engine, bus, storage)
    with engine.connect() as conn:
        request = eventstore.load_stream(conn, "acme", job_id)[0]
    first = threading.Thread(target=a.run_job, args=(request,))
    first.start()  # A's run is slow: it waits for a second run to start, or ~6 s, holding the lease (renewed)
    wait_until(lambda: bool(runs.started), 30, "A to start curating")
    with pytest.raises(Busy, match="being run by another worker"):
        b.run_job(request)  # B leaves the request uncommitted: it comes back to B later
    first.join(timeout=120)
    a.close()
    b.close()
    assert len(runs.started) == 1, runs.started
    with engine.connect() as conn:
        kinds = [e.WhichOneof("payload") for e in eventstore.load_stream(conn, "acme", job_id)]
    assert kinds == ["curation_requested", "dataset_version_created"]
    b.run_job(request)  # once finished, a redelivery changes nothing either
    with engine.connect() as conn:
        assert len(eventstore.load_stream(conn, "acme", job_id)) == 2
    bus.close()
    engine.dispose()
