"""Curation-job application service: request a job, query it, watch it."""

from __future__ import annotations

import threading
import uuid
from typing import Callable, Iterator

from sqlalchemy import Engine

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.errors import ConcurrencyConflict, InvalidArgument, NotFound, Resource
from services.common.idempotency import RequestIdTaken, claim_request_id, created_by_request
from services.common.identity import Caller
from services.common.leases import release_lease, take_lease
from services.common.limits import quote
from services.common.store.engine import reader
from services.common.store.schema import curation_job_view
from services.curation import domain
from services.curation.config import CurationConfig, check_pii_redaction
from services.curation.dataset_catalog import find_dataset

SOURCE = "privtune/curation"
STREAM_TYPE = "curation_job"
REQUEST_KIND = "curation-request"  # unique_names kind of CreateCurationJob's request ids


class CurationApplication:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request(self, caller: Caller, dataset_id: str, parsed: CurationConfig,
                request_id: str = "", correlation_id: str = "") -> domain.CurationJobState:
        if not dataset_id:
            raise InvalidArgument("dataset_id is required: the id CreateDataset returned", field="dataset_id")
        if request_id:  # a retry: the original answer (looked up in a read of its own, then closed)
            existing = self._by_request_id(caller, request_id)
            if existing is not None:
                return existing
        dataset = find_dataset(self.engine, caller.tenant_id, dataset_id)
        if dataset is None:
            raise NotFound(f"dataset {dataset_id!r} not found in tenant {caller.tenant_id!r}; register it first",
                           reason="DATASET_NOT_FOUND", resource=Resource("privtune.v1.Dataset", dataset_id))
        check_pii_redaction(parsed, dataset.classification)
        job_id = f"cj-{uuid.uuid4().hex[:24]}"
        events = domain.decide_request(domain.CurationJobState(), job_id, dataset_id, dataset,
                                       parsed.recipe, parsed.canonical_json(), parsed.sha256())
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or uuid.uuid4().hex)
        envelopes = [new_envelope(e, subject=job_id, tenant_id=caller.tenant_id, source=SOURCE, causation=causation)
                     for e in events]
        try:
            with self.engine.begin() as conn:
                if request_id:
                    claim_request_id(conn, caller.tenant_id, REQUEST_KIND, request_id, job_id)
                eventstore.append(conn, STREAM_TYPE, envelopes, expected_version=0)
        except RequestIdTaken:
            existing = self._by_request_id(caller, request_id)  # a concurrent call with this id won
            if existing is None:
                raise ConcurrencyConflict(f"request_id {quote(request_id)} was claimed and released by a "
                                          "concurrent call; retry") from None
            return existing
        return domain.fold(envelopes)

    def _by_request_id(self, caller: Caller, request_id: str) -> domain.CurationJobState | None:
        job_id = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
        return self.get(caller, job_id) if job_id else None

    def claim_job(self, caller: Caller, job_id: str, worker_id: str, claim_id: str,
                  lease_seconds: int = 30) -> tuple[bool, bool, str]:
        """Take or renew a worker's claim on a job (a lease in the store). Returns (granted, finished, reason)."""
        if not job_id or not worker_id or not claim_id or len(claim_id) > 64:
            raise InvalidArgument("job_id, worker_id and claim_id (at most 64 characters) are required")
        lease_seconds = min(max(lease_seconds or 30, 5), 3600)
        if self.get(caller, job_id).finished:
            return False, True, ""  # nothing to do: the request is marked done
        if not take_lease(self.engine, domain.claim_name(job_id), claim_id, lease_seconds * 1000):
            return False, False, "the job is being curated under another claim"
        if self.get(caller, job_id).finished:  # its outcome was recorded meanwhile: give the lease back
            release_lease(self.engine, domain.claim_name(job_id), claim_id)
            return False, True, ""
        return True, False, ""

    def get(self, caller: Caller, job_id: str) -> domain.CurationJobState:
        if not job_id:
            raise InvalidArgument("job_id is required", field="job_id")
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, job_id)
        if not events:
            raise NotFound(f"curation job {job_id!r} not found in tenant {caller.tenant_id!r}",
                           reason="CURATION_JOB_NOT_FOUND", resource=Resource("privtune.v1.CurationJob", job_id))
        return domain.fold(events)

    def list(self, caller: Caller, page_size: int = 50, page_token: str = "",
             dataset_id: str = "") -> tuple[list[dict], str]:
        filters = [curation_job_view.c.dataset_id == dataset_id] if dataset_id else []
        return queries.page(self.engine, curation_job_view, ("created_at_ms", "job_id"), caller.tenant_id,
                            page_size, page_token, *filters, filters={"dataset_id": dataset_id})

    def watch(self, caller: Caller, job_id: str, is_active: Callable[[], bool], stop: threading.Event,
              poll_interval: float = 0.2) -> Iterator[events_pb2.EventEnvelope]:
        """The job's events from the first; ends after the job finished."""
        self.get(caller, job_id)
        return queries.watch_stream(
            self.engine, caller.tenant_id, job_id, is_active, stop, poll_interval,
            final=lambda env: env.WhichOneof("payload") in ("dataset_version_created", "curation_failed"))
