"""Curation-job application service: request a job, query it, watch it."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Callable, Iterator, Mapping

from pydantic import ValidationError
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.envelope import Causation, new_envelope
from services.common.errors import AlreadyExists, InvalidArgument, NotFound
from services.common.identity import Caller
from services.common.store.schema import curation_job_view, unique_names
from services.curation import domain
from services.curation.config import CurationConfig
from services.ingest import domain as dataset_domain

SOURCE = "privtune/curation"
STREAM_TYPE = "curation_job"


def parse_config(recipe: str, entries: Mapping[str, str]) -> CurationConfig:
    """Build the job's config from ``dotted.key -> value`` entries (values parsed as JSON when they are).

    Example: ``{"pii.mode": "tag", "holdout_fraction": "0.2", "quality.languages": '["en","de"]'}``.

    Raises:
        InvalidArgument: naming each unknown key or bad value.
    """
    nested: dict[str, object] = {}
    for key, raw in sorted(entries.items()):
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise InvalidArgument(f"config key {key!r} conflicts with {part!r}")
            node = child
        node[leaf] = value
    if recipe:
        nested["recipe"] = recipe
    try:
        return CurationConfig.model_validate(nested)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidArgument(f"invalid curation config: {problems}") from None


class CurationApplication:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def request(self, caller: Caller, dataset_id: str, recipe: str, config: Mapping[str, str],
                request_id: str = "", correlation_id: str = "") -> domain.CurationJobState:
        if not dataset_id:
            raise InvalidArgument("dataset_id is required")
        parsed = parse_config(recipe, config)
        with self.engine.connect() as conn:
            if request_id:
                row = conn.execute(select(unique_names.c.aggregate_id).where(
                    unique_names.c.tenant_id == caller.tenant_id, unique_names.c.kind == "curation-request",
                    unique_names.c.name == request_id)).first()
                if row:
                    return self.get(caller, row.aggregate_id)
            dataset_events = eventstore.load_stream(conn, caller.tenant_id, dataset_id)
        dataset = dataset_domain.DatasetState()
        for env in dataset_events:
            dataset = dataset_domain.evolve(dataset, env)
        if not dataset.exists:
            raise NotFound(f"dataset {dataset_id!r} not found in tenant {caller.tenant_id!r}; register it first")
        job_id = f"cj-{uuid.uuid4().hex[:24]}"
        events = domain.decide_request(domain.CurationJobState(), job_id, dataset_id, dataset.storage_uri,
                                       parsed.recipe, parsed.canonical_json(), parsed.sha256())
        causation = Causation(actor=caller.actor, correlation_id=correlation_id or uuid.uuid4().hex)
        envelopes = [new_envelope(e, subject=job_id, tenant_id=caller.tenant_id, source=SOURCE, causation=causation)
                     for e in events]
        with self.engine.begin() as conn:
            if request_id:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(unique_names).values(tenant_id=caller.tenant_id, kind="curation-request",
                                                                 name=request_id, aggregate_id=job_id))
                except IntegrityError:
                    raise AlreadyExists(f"request_id {request_id!r} is being used by a concurrent call; retry") from None
            eventstore.append(conn, STREAM_TYPE, envelopes, expected_version=0)
        return domain.fold(envelopes)

    def get(self, caller: Caller, job_id: str) -> domain.CurationJobState:
        if not job_id:
            raise InvalidArgument("job_id is required")
        with self.engine.connect() as conn:
            events = eventstore.load_stream(conn, caller.tenant_id, job_id)
        if not events:
            raise NotFound(f"curation job {job_id!r} not found in tenant {caller.tenant_id!r}")
        return domain.fold(events)

    def list(self, caller: Caller, page_size: int = 50, page_token: str = "",
             dataset_id: str = "") -> tuple[list[dict], str]:
        filters = [curation_job_view.c.dataset_id == dataset_id] if dataset_id else []
        return queries.page(self.engine, curation_job_view, "job_id", caller.tenant_id, page_size, page_token,
                            *filters)

    def watch(self, caller: Caller, job_id: str, is_active: Callable[[], bool], stop: threading.Event,
              poll_interval: float = 0.2) -> Iterator[events_pb2.EventEnvelope]:
        """The job's events from the first; ends after the job finished."""
        self.get(caller, job_id)
        return queries.watch_stream(
            self.engine, caller.tenant_id, job_id, is_active, stop, poll_interval,
            final=lambda env: env.WhichOneof("payload") in ("dataset_version_created", "curation_failed"))
