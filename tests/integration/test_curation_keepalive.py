"""Curation jobs run once: a job longer than the bus session timeout is not taken over by another member,
and a request that reaches two workers at once is curated by the one holding the job's claim.

The curation service (API, claims, outcome recorder) runs in-process; the workers are store-less
members of group ``curation.worker`` that claim jobs over gRPC and report outcomes on the bus.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from privtune.platform import Platform
from privtune.v1 import curation_service_pb2 as cpb
from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import Message
from services.common.config import PlatformConfig
from services.common.envelope import Causation, new_envelope
from services.common.errors import Busy
from services.curation import domain
from services.curation.application import SOURCE, STREAM_TYPE
from services.curation.claims import GrpcCurationClaims
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator
from services.curation.worker import CurationWorker
from tests.platform_fixtures import component_credentials, component_target, wait_until

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


@pytest.fixture
def curation(tmp_path: Path) -> Iterator[Platform]:
    """The curation service alone (no worker of its own), on an embedded bus with a short session timeout."""
    config = PlatformConfig.from_env(
        tmp_path, grpc_address="127.0.0.1:0",
        bus_uri=f"sqlite:///{tmp_path}/events.db?partitions=1&session_timeout_ms={SESSION_TIMEOUT_MS}")
    platform = Platform(config, services=("curation",)).start()
    yield platform
    platform.stop()


def _worker(platform: Platform, runs: Runs, **kwargs: Any) -> CurationWorker:
    config = platform.config
    claims = GrpcCurationClaims(component_target(platform), credentials=component_credentials(platform))
    return CurationWorker(platform.bus, claims, config.storage_uri,  # type: ignore[arg-type]
                          b"k" * 32, config.work_dir, curator=runs.curator, **kwargs)


def _request_job(platform: Platform) -> events_pb2.EventEnvelope:
    folder = platform.config.storage_path / "acme" / "faq"
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
    with platform.engine.begin() as conn:  # type: ignore[union-attr]
        eventstore.append(conn, STREAM_TYPE, [env], expected_version=0)  # the relay publishes it
    return env


def _kinds(platform: Platform, job_id: str) -> list[str]:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return [e.WhichOneof("payload") for e in eventstore.load_stream(conn, "acme", job_id)]


def _state(platform: Platform, job_id: str) -> domain.CurationJobState:
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        return domain.fold(eventstore.load_stream(conn, "acme", job_id))


def test_a_job_longer_than_the_session_timeout_is_not_run_again_by_another_member(
        curation: Platform, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    runs = Runs()
    workers = [_worker(curation, runs) for _ in range(2)]  # two members of group curation.worker
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,), name=f"member-{i}") for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    try:
        job_id = _request_job(curation).subject
        wait_until(lambda: _state(curation, job_id).finished, timeout=120, what="the job to finish")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for w in workers:
            w.close()
    assert _state(curation, job_id).state == cpb.CURATION_JOB_STATE_SUCCEEDED, _state(curation, job_id).reason
    assert len(runs.started) == 1, f"the job ran {len(runs.started)} times, on {runs.started}"
    assert "cannot commit" not in caplog.text
    assert not (curation.config.work_dir / "acme" / "curation" / job_id).exists()


def test_a_job_delivered_to_two_workers_at_once_is_curated_once(curation: Platform) -> None:
    """Worker B gets the same request while worker A still curates it (a session lapse, a re-send):
    B loses the claim and leaves the request for later; A's outcome is recorded once; B, handed the
    request again, finds the job finished and does nothing."""
    runs = Runs()
    a, b = _worker(curation, runs, lease_seconds=6), _worker(curation, runs, lease_seconds=6)
    request = _request_job(curation)
    first = threading.Thread(target=a.run_job, args=(request,))
    first.start()  # A's run is slow: it waits for a second run to start, or ~6 s, holding (renewing) its claim
    wait_until(lambda: bool(runs.started), 30, "A to start curating")
    with pytest.raises(Busy, match="being curated by another worker"):
        b.run_job(request)  # B leaves the request uncommitted: it comes back to B later
    first.join(timeout=120)
    wait_until(lambda: _state(curation, request.subject).finished, 30, "A's outcome to be recorded")
    assert len(runs.started) == 1, runs.started
    assert b.run_job(request) is None  # the request came back: the job is finished, nothing to do
    assert _kinds(curation, request.subject) == ["curation_requested", "dataset_version_created"]
    recorded = _state(curation, request.subject)
    assert recorded.state == cpb.CURATION_JOB_STATE_SUCCEEDED
    a.close()
    b.close()


def test_an_outcome_from_a_claim_that_lapsed_and_was_taken_over_is_not_recorded(curation: Platform) -> None:
    """A worker whose claim lapsed (it stalled) reports late: the recorder drops its outcome, and the
    claimant that took the job over records the job's one outcome."""
    runs = Runs()
    runs.second.set()  # no slow run here
    stale, fresh = _worker(curation, runs, lease_seconds=5), _worker(curation, runs, lease_seconds=5)
    request = _request_job(curation)
    job_id = request.subject
    claim = stale.claims.claim("acme", job_id, stale.worker_id, "stale-claim", 5)
    assert claim.granted
    with curation.engine.begin() as conn:  # type: ignore[union-attr]  # the stale claim lapses
        from services.common.store.schema import relay_leases
        from sqlalchemy import update

        conn.execute(update(relay_leases).where(relay_leases.c.owner == "stale-claim").values(lease_until_ms=0))
    outcome = fresh.run_job(request)
    assert outcome is not None and outcome.causation_id != "stale-claim"
    late = new_envelope(events_pb2.CurationFailed(job_id=job_id, dataset_id="ds-0123456789ab", error_code="internal",
                                                  reason="late"), subject=job_id, tenant_id="acme", source="x",
                        causation=Causation(stale.worker_id, "c", causation_id="stale-claim"))
    curation.bus.publish([Message("privtune.curation.reports", job_id.encode(), codec.encode(late))])  # type: ignore[union-attr]
    wait_until(lambda: _state(curation, job_id).finished, 30, "the fresh outcome to be recorded")
    assert _kinds(curation, job_id) == ["curation_requested", "dataset_version_created"]
    stale.close()
    fresh.close()
