"""The curation worker: curates requested jobs and reports their outcome on the bus.

It consumes ``privtune.curation.events`` as group ``curation.worker`` and holds no
credentials for the curation service's store: everything a job needs (the config, where
the raw files are, their checksum and classification) travels on ``CurationRequested``.
Before curating, it claims the job (``CurationWorkService.ClaimCurationJob``, a lease the
curation service keeps, renewed while the job runs): a second delivery of the request
(a relay re-send, a member whose session lapsed) that reaches another worker finds the
job claimed and is left uncommitted, so it comes back after a backoff — by then the job
has its outcome, or its worker died and the lease lapsed. The pipeline runs outside any
transaction (it can take hours); its outcome (DatasetVersionCreated or CurationFailed)
goes on ``privtune.curation.reports`` with the claim id as ``causation_id``, and the
curation service records it if the claim is still the job's (report_recorder.py). An
outcome that did not reach the bus is kept and published again when the request comes
back; the version being content addressed, a re-run after a crash produces the same id.

While a job runs the worker does not poll, so a keepalive thread keeps its group
membership (see services/common/keepalive.py). The job's local files live in its work
folder under the data folder (see work_area.py), which is removed when the job ends and,
after a crash, when the job is redelivered.
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

from privtune.v1 import events_pb2
from services.common import envelope as codec
from services.common.bus import EventBus, Message, Record, Subscription
from services.common.consumer import MAX_HANDLER_FAILURES, dead_letter_message
from services.common.envelope import Causation, new_envelope
from services.common.errors import Busy, MalformedEvent, PrivtuneError
from services.common.keepalive import keep_membership, keepalive_interval
from services.common.storage import resolve_dataset
from services.common.supervision import is_transient, run_loop
from services.common.topics import CURATION_EVENTS, CURATION_REPORTS
from services.curation import domain
from services.curation.claims import CurationClaims, renewing
from services.curation.config import CurationConfig, check_pii_redaction
from services.curation.pipeline import Curator
from services.curation.work_area import attempt_work_dir, job_work_dir, remove_abandoned_work, remove_dead_attempts

log = logging.getLogger(__name__)
GROUP = "curation.worker"
SOURCE = "privtune/curation-worker"


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
    """Curates each requested job once, as a member of group ``curation.worker``.

    Args:
        claims: where jobs are claimed (the curation service's CurationWorkService).
        work_root: the platform's work folder (``PlatformConfig.work_dir``); a job's local
            files go under ``<work_root>/<tenant>/curation/<job_id>/``.
        curator: builds a job's pipeline from its config and pseudonym salt (tests wrap it).
        lease_seconds: how long a claim lives without a renewal (renewed every third of it).
    """

    def __init__(self, bus: EventBus, claims: CurationClaims, storage_root: str, secret: bytes, work_root: Path,
                 curator: Callable[[CurationConfig, str], Curator] = Curator, lease_seconds: int = 30) -> None:
        self.bus = bus
        self.claims = claims
        self.storage_root = storage_root
        self.secret = secret
        self.work_root = work_root
        self.curator = curator
        self.lease_seconds = lease_seconds
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keepalive_interval = keepalive_interval(bus.uri)
        self._claim_ids: dict[str, str] = {}                        # job -> this worker's claim on it
        self._unsent: dict[str, events_pb2.EventEnvelope] = {}      # job -> outcome until its request is done
        self._failures: dict[str, int] = {}                         # record position -> failures in a row
        remove_abandoned_work(work_root)
        self.subscription: Subscription | None = bus.subscribe(GROUP, [CURATION_EVENTS])

    def run(self, stop: threading.Event) -> None:
        """Take jobs until ``stop`` is set; any failure (bus, the curation service away, a job claimed by
        another worker) is retried with backoff after rejoining the group, which redelivers the uncommitted
        request (see supervision.run_loop)."""
        run_loop("curation worker", self._take_job, stop, idle_seconds=0.0, on_error=self._rejoin)

    def _take_job(self) -> bool:
        if self.subscription is None:
            self.subscription = self.bus.subscribe(GROUP, [CURATION_EVENTS])
        records = self.subscription.poll(max_records=1, timeout=0.5)
        for record in records:
            with keep_membership(self.subscription, self.keepalive_interval, GROUP):
                job_id = self._handle_or_give_up(record)
            self.subscription.commit([record])
            if job_id:  # only once the request is done for good: a redelivery before this reuses the claim
                self._forget(job_id)
        return bool(records)

    def _handle_or_give_up(self, record: Record) -> str:
        """Handle a record; one that keeps failing for a reason other than an outage or a claim held
        elsewhere is dead-lettered after ``MAX_HANDLER_FAILURES`` tries instead of blocking its partition."""
        key = f"{record.topic}/{record.partition}/{record.offset}"
        try:
            job_id = self.handle(record)
        except Exception as exc:
            if isinstance(exc, Busy) or is_transient(exc):
                raise
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            if failures < MAX_HANDLER_FAILURES:
                raise
            log.error("curation worker: request at %s failed %d times (%s); dead-lettering it", key, failures,
                      type(exc).__name__)
            self.bus.publish([dead_letter_message(record, GROUP, MalformedEvent(
                "rejected_by_handler", f"{type(exc).__name__} on {failures} attempts"))])
            job_id = ""
        self._failures.pop(key, None)
        return job_id

    def _rejoin(self) -> None:
        if self.subscription is not None:
            try:
                self.subscription.close()
            except Exception:  # noqa: BLE001 - the member may already be gone
                log.debug("closing the curation worker's membership", exc_info=True)
        self.subscription = None

    def handle(self, record: Record) -> str:
        """Run the record's job if it is a request; returns the job id ("" for anything else)."""
        try:
            env = codec.decode(record.value)
        except MalformedEvent as exc:
            self.bus.publish([dead_letter_message(record, GROUP, exc)])
            return ""
        if env.WhichOneof("payload") != "curation_requested":
            return ""
        self.run_job(env)
        return env.subject

    def run_job(self, request: events_pb2.EventEnvelope) -> events_pb2.EventEnvelope | None:
        """Claim, curate and report one requested job. Returns the reported outcome (None: nothing to do).

        Raises:
            Busy: another worker holds the job's claim (the request must stay uncommitted).
            BusUnavailable: the claim or the report could not be made (idem; the outcome is kept).
        """
        state = domain.fold([request])  # the job's facts travel on its request
        job_id, tenant = state.job_id, state.tenant_id
        claim_id = self._claim_ids.setdefault(job_id, uuid.uuid4().hex)
        answer = self.claims.claim(tenant, job_id, self.worker_id, claim_id, self.lease_seconds)
        if answer.finished:
            if answer.reason:
                log.warning("curation job %s: not curating it: %s", job_id, answer.reason)
            try:
                remove_dead_attempts(job_work_dir(self.work_root, tenant, job_id))
            except PrivtuneError:
                log.warning("curation job %s: no work folder to clean for it", job_id[:64])
            return None
        if not answer.granted:  # not done: left uncommitted, so it comes back once the holder finished or died
            raise Busy(f"curation job {job_id} is being curated by another worker ({answer.reason})")
        outcome = self._unsent.get(job_id)
        if outcome is None:
            with renewing(self.claims, tenant, job_id, self.worker_id, claim_id, self.lease_seconds):
                payload = self._curate(state)
            outcome = self._unsent[job_id] = new_envelope(
                payload, subject=job_id, tenant_id=tenant, source=SOURCE,
                causation=Causation(actor=self.worker_id, correlation_id=request.correlation_id,
                                    causation_id=claim_id))
        self.bus.publish([Message(CURATION_REPORTS, job_id.encode(), codec.encode(outcome), id=outcome.id)])
        return outcome  # claim and outcome are forgotten once the request is committed (_take_job)

    def _forget(self, job_id: str) -> None:
        self._claim_ids.pop(job_id, None)
        self._unsent.pop(job_id, None)

    def _curate(self, state: domain.CurationJobState) -> events_pb2.DatasetVersionCreated | events_pb2.CurationFailed:
        try:
            config = CurationConfig.model_validate_json(state.config_json)
            check_pii_redaction(config, state.dataset_classification)
            storage, prefix = resolve_dataset(state.dataset_storage_uri, self.storage_root, state.tenant_id)
            # One salt per dataset version: the inputs that decide the version (data and config) are in it,
            # so two versions never share surrogates or pseudonyms, and a retried job writes the same version.
            salt = hmac.new(self.secret, f"{state.tenant_id}/{state.dataset_id}/{state.dataset_checksum_sha256}/"
                                         f"{config.sha256()}".encode(), hashlib.sha256).hexdigest()
            log.info("curation job %s: curating dataset %s", state.job_id, state.dataset_id)
            with attempt_work_dir(self.work_root, state.tenant_id, state.job_id) as work:
                outcome = self.curator(config, salt).run(storage, prefix, state.dataset_id,
                                                         state.dataset_checksum_sha256, work_dir=work)
            counts = outcome.version.manifest["counts"]  # type: ignore[index]
            return domain.version_created(
                state, dataset_version_id=outcome.version.version_id,
                manifest_uri=storage.uri_for(outcome.version.manifest_key),
                manifest_sha256=outcome.version.manifest_sha256, record_count=counts["train"] + counts["holdout"],
                train_count=counts["train"], holdout_count=counts["holdout"],
                quarantined_count=counts["quarantined"],
                shard_count=len(outcome.version.manifest["shards"]),  # type: ignore[arg-type]
                report_uri=storage.uri_for(outcome.version.report_key))
        except PrivtuneError as exc:
            return domain.decide_fail(state, type(exc).__name__, str(exc))[0]
        except Exception as exc:  # noqa: BLE001 - the job fails; the message names the type, never data
            log.exception("curation job %s failed", state.job_id)
            return domain.decide_fail(state, "internal", f"{type(exc).__name__} while curating; see worker log")[0]

    def close(self) -> None:
        self._rejoin()
