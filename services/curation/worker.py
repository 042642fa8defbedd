"""The curation worker: runs requested jobs and records their outcome.

It consumes ``privtune.curation.events`` as group ``curation.worker``. The pipeline
runs outside any database transaction (it can take hours); the outcome is appended in
a short one. A job redelivered after a crash reruns and, the version being content
addressed, produces the same version id; a finished job is never run again.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
from pathlib import Path

from sqlalchemy import Engine

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common import eventstore
from services.common.bus import EventBus, Record
from services.common.consumer import dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import BusUnavailable, CommitFailed, ConcurrencyConflict, MalformedEvent, PrivtuneError
from services.common.storage import resolve_dataset
from services.common.topics import CURATION_EVENTS
from services.curation import domain
from services.curation.application import SOURCE, STREAM_TYPE
from services.curation.config import CurationConfig
from services.curation.pipeline import Curator

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
    def __init__(self, engine: Engine, bus: EventBus, storage_root: str, secret: bytes) -> None:
        self.engine = engine
        self.bus = bus
        self.storage_root = storage_root
        self.secret = secret
        self.subscription = bus.subscribe(GROUP, [CURATION_EVENTS])

    def run(self, stop: threading.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                for record in self.subscription.poll(max_records=1, timeout=0.5):
                    self.handle(record)
                    self.subscription.commit([record])
                backoff = 0.5
            except (BusUnavailable, CommitFailed) as exc:
                log.warning("curation worker: %s; retrying in %.1fs", exc, backoff)
                stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                self.subscription.close()
                self.subscription = self.bus.subscribe(GROUP, [CURATION_EVENTS])

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
            return state
        causation = Causation(actor=request.actor, correlation_id=request.correlation_id, causation_id=request.id)
        try:
            config = CurationConfig.model_validate_json(state.config_json)
            storage, prefix = resolve_dataset(state.dataset_storage_uri, self.storage_root, state.tenant_id)
            salt = hmac.new(self.secret, f"{state.tenant_id}/{state.dataset_id}".encode(), hashlib.sha256).hexdigest()
            dataset = self._dataset_checksum(state)
            log.info("curation job %s: curating dataset %s", state.job_id, state.dataset_id)
            outcome = Curator(config, salt).run(storage, prefix, state.dataset_id, dataset)
            counts = outcome.version.manifest["counts"]  # type: ignore[index]
            created = events_pb2.DatasetVersionCreated(
                dataset_version_id=outcome.version.version_id, dataset_id=state.dataset_id, job_id=state.job_id,
                manifest_uri=storage.uri_for(outcome.version.manifest_key),
                manifest_sha256=outcome.version.manifest_sha256, record_count=counts["train"] + counts["holdout"],
                train_count=counts["train"], holdout_count=counts["holdout"],
                quarantined_count=counts["quarantined"],
                shard_count=len(outcome.version.manifest["shards"]),  # type: ignore[arg-type]
                report_uri=storage.uri_for(outcome.version.report_key), recipe=config.recipe)
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

    def _dataset_checksum(self, state: domain.CurationJobState) -> str:
        from services.ingest import domain as dataset_domain

        with self.engine.connect() as conn:
            ds = dataset_domain.DatasetState()
            for env in eventstore.load_stream(conn, state.tenant_id, state.dataset_id):
                ds = dataset_domain.evolve(ds, env)
        return ds.checksum_sha256

    def close(self) -> None:
        self.subscription.close()
