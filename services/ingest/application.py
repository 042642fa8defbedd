"""Dataset application service: load -> decide -> save (+ outbox). Nothing else."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping

from sqlalchemy import Connection, Engine, insert
from sqlalchemy.exc import IntegrityError

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.errors import (AlreadyExists, ConcurrencyConflict, FailedPrecondition, InvalidArgument, NotFound,
                                    Precondition, PrivtuneError, Resource)
from services.common.idempotency import RequestIdTaken, claim_request_id, created_by_request
from services.common.identity import Caller
from services.common.limits import quote
from services.common.storage import as_storage_uri, resolve_dataset
from services.common.store.engine import reader
from services.common.store.schema import dataset_view, unique_names
from services.ingest import domain, storage_scan

SOURCE = "privtune/ingest"
STREAM_TYPE = "dataset"
REQUEST_KIND = "dataset-request"  # unique_names kind of CreateDataset's request ids


@dataclass(frozen=True)
class RegisterRequest:
    name: str
    storage_uri: str
    classification: int
    format_hint: int = 0
    checksum_sha256: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


def _fold(events: list[events_pb2.EventEnvelope]) -> domain.DatasetState:
    state = domain.DatasetState()
    for env in events:
        state = domain.evolve(state, env)
    return state


class DatasetApplication:
    """Registers datasets and answers queries about them, always scoped to the caller's tenant."""

    def __init__(self, engine: Engine, storage_root: str | Path) -> None:
        """``storage_root``: a folder, or a ``file://`` / ``s3://`` URI; tenant T lives in ``<root>/T/``."""
        self.engine = engine
        self.storage_root = storage_root
        self.storage_root_uri = as_storage_uri(storage_root)

    def register(self, caller: Caller, req: RegisterRequest, correlation_id: str = "") -> domain.DatasetState:
        """Register the files at ``req.storage_uri``; a retry with the same ``request_id`` answers the original."""
        if req.request_id:
            existing = self._by_request_id(caller, req.request_id)
            if existing is not None:
                return existing
        try:
            return self._register(caller, req, correlation_id)
        except RequestIdTaken:
            existing = self._by_request_id(caller, req.request_id)  # the concurrent call that won
            if existing is None:
                raise ConcurrencyConflict(f"request_id {quote(req.request_id)} was claimed and released by a "
                                          "concurrent call; retry") from None
            return existing

    def _register(self, caller: Caller, req: RegisterRequest, correlation_id: str) -> domain.DatasetState:
        dataset_id = f"ds-{uuid.uuid4().hex[:24]}"
        draft = domain.RegisterDataset(
            tenant_id=caller.tenant_id, dataset_id=dataset_id, name=req.name, storage_uri=req.storage_uri,
            format_hint=req.format_hint, classification=req.classification, checksum_sha256="",
            file_count=0, total_bytes=0, labels=dict(req.labels),
        )
        domain.validate_registration(draft)  # cheap checks before touching storage
        if req.checksum_sha256 and len(req.checksum_sha256) != 64:
            raise InvalidArgument("checksum_sha256 must be 64 hex characters (sha256 of the file manifest)",
                                  field="checksum_sha256")
        if not req.storage_uri:
            raise InvalidArgument("storage_uri is required: where the raw files are in the tenant's storage "
                                  "(file://... or s3://...)", field="storage_uri")
        try:
            storage, prefix = resolve_dataset(req.storage_uri, self.storage_root_uri, caller.tenant_id)
            scanned = storage_scan.scan_dataset(storage, prefix)
        except PrivtuneError as exc:
            raise exc.about("storage_uri")
        if req.checksum_sha256 and req.checksum_sha256.lower() != scanned.checksum_sha256:
            raise FailedPrecondition(
                f"checksum mismatch for {quote(req.storage_uri)}: you sent {quote(req.checksum_sha256)}, the files "
                f"there hash to {scanned.checksum_sha256}; re-upload or send the right checksum",
                reason="CHECKSUM_MISMATCH", field="checksum_sha256",
                preconditions=[Precondition("CHECKSUM", "storage_uri", "the files at storage_uri hash to "
                                            f"{scanned.checksum_sha256}")])
        cmd = domain.RegisterDataset(**{**draft.__dict__, "checksum_sha256": scanned.checksum_sha256,
                                        "file_count": scanned.file_count, "total_bytes": scanned.total_bytes})
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or uuid.uuid4().hex)
        with self.engine.begin() as conn:
            if req.request_id:  # first: a racing retry answers the original instead of "name taken"
                claim_request_id(conn, caller.tenant_id, REQUEST_KIND, req.request_id, dataset_id)
            self._claim_name(conn, caller, "dataset", req.name, dataset_id,
                             f"a dataset named {quote(req.name)} already exists in tenant {caller.tenant_id!r}; "
                             "pick another name")
            events = domain.decide_register(domain.DatasetState(), cmd)
            envelopes = [new_envelope(e, subject=dataset_id, tenant_id=caller.tenant_id, source=SOURCE,
                                      causation=causation) for e in events]
            eventstore.append(conn, STREAM_TYPE, envelopes, expected_version=0)
        return _fold(envelopes)

    @staticmethod
    def _claim_name(conn: Connection, caller: Caller, kind: str, name: str, aggregate_id: str, message: str) -> None:
        try:
            with conn.begin_nested():
                conn.execute(insert(unique_names).values(tenant_id=caller.tenant_id, kind=kind, name=name,
                                                         aggregate_id=aggregate_id))
        except IntegrityError:
            raise AlreadyExists(message, reason=f"{kind.upper()}_NAME_TAKEN", field="name",
                                resource=Resource(f"privtune.v1.{kind.title()}", name)) from None

    def _by_request_id(self, caller: Caller, request_id: str) -> domain.DatasetState | None:
        dataset_id = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
        return self.get(caller, dataset_id) if dataset_id else None

    def get(self, caller: Caller, dataset_id: str) -> domain.DatasetState:
        """Strongly consistent: folds the dataset's own events."""
        if not dataset_id:
            raise InvalidArgument("dataset_id is required", field="dataset_id")
        with reader(self.engine).connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, dataset_id)
        if not events:
            raise NotFound(f"dataset {dataset_id!r} not found in tenant {caller.tenant_id!r}",
                           reason="DATASET_NOT_FOUND", resource=Resource("privtune.v1.Dataset", dataset_id))
        return _fold(events)

    def list(self, caller: Caller, page_size: int = 50, page_token: str = "") -> tuple[list[dict], str]:
        """A page of the dataset read model, oldest first; returns (rows, next_page_token)."""
        return queries.page(self.engine, dataset_view, ("created_at_ms", "dataset_id"), caller.tenant_id, page_size,
                            page_token)

    def watch(self, caller: Caller, dataset_id: str, is_active: Callable[[], bool],
              stop: threading.Event, poll_interval: float = 0.2) -> Iterator[events_pb2.EventEnvelope]:
        """The dataset's events from the first, then new ones as they are stored."""
        self.get(caller, dataset_id)  # NotFound before the stream starts
        return queries.watch_stream(self.engine, caller.tenant_id, dataset_id, is_active, stop, poll_interval)
