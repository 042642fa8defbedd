"""The curation worker: runs requested jobs and records their outcome.

It consumes ``privtune.curation.events`` as group ``curation.worker``. The pipeline
runs outside any database transaction (it can take hours); the outcome is appended in
a short one. A job redelivered after a crash reruns and, the version being content
addressed, produces the same version id; a finished job is never run again.

While a job runs the worker does not poll, so a keepalive thread keeps its group
membership (see services/common/keepalive.py): another member never takes the job
over just because it runs longer than the bus's session timeout. The job's local
files live in its work folder under the data folder (see work_area.py), which is
removed when the job ends and, after a crash, when the job is redelivered.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import socket
import threading
import uuid
from pathlib import Path
from typing import Callable

from sqlalchemy import Engine

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Record, Subscription
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import Busy, ConcurrencyConflict, MalformedEvent, PrivtuneError
from services.common.keepalive import keep_membership, keepalive_interval
from services.common.leases import holding_lease
from services.common.storage import resolve_dataset
from services.common.supervision import run_loop
from services.common.topics import CURATION_EVENTS
from services.curation import domain
from services.curation.application import SOURCE, STREAM_TYPE
from services.curation.config import CurationConfig, check_pii_redaction
from services.curation.pipeline import Curator
from services.curation.work_area import attempt_work_dir, job_work_dir, remove_abandoned_work, remove_dead_attempts

log = logging.getLogger(__name__)
GROUP = "curation.worker"


def load_or_create_secret(path: Path) -> bytes:
    """The platform's pseudonym key (kept beside the data, mode 0600; a KMS replaces it later)."""
    env = os.environ.get("PRIVTUNE_PII_SECRET")
    if env:
        return env.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    return path.read_bytes()


class CurationWorker:
    """Runs each requested curation job once, as a member of group ``curation.worker``.

    Args:
        work_root: the platform's work folder (``PlatformConfig.work_dir``); a job's local
            files go under ``<work_root>/<tenant>/curation/<job_id>/``.
        curator: builds a job's pipeline from its config and pseudonym salt (tests wrap it).
    """

    def __init__(self, engine: Engine, bus: EventBus, storage_root: str, secret: bytes, work_root: Path,
                 curator: Callable[[CurationConfig, str], Curator] = Curator, lease_ms: int = 30_000) -> None:
        self.engine = engine
        self.bus = bus
        self.storage_root = storage_root
        self.secret = secret
        self.work_root = work_root
        self.curator = curator
        self.lease_ms = lease_ms
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keepalive_interval = keepalive_interval(bus.uri)
        remove_abandoned_work(work_root)
        self.subscription: Subscription | None = bus.subscribe(GROUP, [CURATION_EVENTS])

    def run(self, stop: threading.Event) -> None:
        """Take jobs until ``stop`` is set; any failure (bus, store, a rebalance) is retried with backoff
        after rejoining the group, which redelivers the uncommitted job (see supervision.run_loop)."""
        run_loop("curation worker", self._take_job, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _take_job(self) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [CURATION_EVENTS])
        records = self.subscription.poll(max_records=1, timeout=0.5)
        for record in records:
            with keep_membership(self.subscription, self.keepalive_interval, GROUP):
                self.handle(record)
            self.subscription.commit([record])
        return bool(records)

    def _rejoin(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the curation worker's membership", exc_info=True)
        self.subscription = None

    def handle(self, record: Record) -> None:
        try:
            env = codec.decode(record.value)
        except MalformedEvent as exc:
            self.bus.publish([dead_letter_message(record, GROUP, exc)])
            return
        if env.WhichOneof("payload") == "curation_requested":
            self.run_job(env)

    def run_job(self, request: events_pb2.EventEnvelope) -> domain.CurationJobState:
        with self.engine.connect() as conn:
            state = domain.fold(eventstore.load_stream(conn, request.tenant_id, request.subject))
        if state.finished:
            remove_dead_attempts(job_work_dir(self.work_root, state.tenant_id, state.job_id))
            return state
        # Claim before work: a second delivery of the request (a relay re-send, a member whose session
        # lapsed) must not curate the same job at the same time. The lease is renewed while the job runs
        # and expires if this worker dies, so the job's redelivery can run it then.
        with holding_lease(self.engine, f"curation-job:{state.tenant_id}:{state.job_id}", self.worker_id,
                           self.lease_ms) as held:
            if not held:  # not done: left uncommitted, so it comes back once the holder finished or died
                raise Busy(f"curation job {state.job_id} is being run by another worker; not running it now")
            return self._curate(state, request)

    def _curate(self, state: domain.CurationJobState, request: events_pb2.EventEnvelope) -> domain.CurationJobState:
        causation = Causation(actor=request.actor, correlation_id=request.correlation_id, causation_id=request.id)
        try:
            config = CurationConfig.model_validate_json(state.config_json)
            check_pii_redaction(config, state.dataset_classification)
            storage, prefix = resolve_dataset(state.dataset_storage_uri, self.storage_root, state.tenant_id)
            salt = hmac.new(self.secret, f"{state.tenant_id}/{state.dataset_id}".encode(), hashlib.sha256).hexdigest()
            log.info("curation job %s: curating dataset %s", state.job_id, state.dataset_id)
            with attempt_work_dir(self.work_root, state.tenant_id, state.job_id) as work:
                outcome = self.curator(config, salt).run(storage, prefix, state.dataset_id,
                                                         state.dataset_checksum_sha256, work_dir=work)
            counts = outcome.version.manifest["counts"]  # type: ignore[index]
            created = domain.version_created(
                state, dataset_version_id=outcome.version.version_id,
                manifest_uri=storage.uri_for(outcome.version.manifest_key),
                manifest_sha256=outcome.version.manifest_sha256, record_count=counts["train"] + counts["holdout"],
                train_count=counts["train"], holdout_count=counts["holdout"],
                quarantined_count=counts["quarantined"],
                shard_count=len(outcome.version.manifest["shards"]),  # type: ignore[arg-type]
                report_uri=storage.uri_for(outcome.version.report_key))
            events: list = domain.decide_complete(state, created)
        except PrivtuneError as exc:
            events = domain.decide_fail(state, type(exc).__name__, str(exc))
        except Exception as exc:  # noqa: BLE001 - the job fails; the message names the type, never data
            log.exception("curation job %s failed", state.job_id)
            events = domain.decide_fail(state, "internal", f"{type(exc).__name__} while curating; see worker log")
        envelopes = [new_envelope(e, subject=state.job_id, tenant_id=state.tenant_id, source=SOURCE,
                                  causation=causation) for e in events]
        try:
            with self.engine.begin() as conn:
                eventstore.append(conn, STREAM_TYPE, envelopes, expected_version=state.version)
        except ConcurrencyConflict:
            log.info("curation job %s was finished by another worker", state.job_id)
        with self.engine.connect() as conn:
            return domain.fold(eventstore.load_stream(conn, state.tenant_id, state.job_id))

    def close(self) -> None:
        self._rejoin()
