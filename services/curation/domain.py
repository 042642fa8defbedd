"""Curation-job aggregate: pure decisions on frozen state, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping

from privtune.v1 import curation_service_pb2 as api
from privtune.v1 import events_pb2
from services.common.errors import FailedPrecondition

REQUESTED, SUCCEEDED, FAILED = (api.CURATION_JOB_STATE_REQUESTED, api.CURATION_JOB_STATE_SUCCEEDED,
                                api.CURATION_JOB_STATE_FAILED)


@dataclass(frozen=True)
class DatasetFacts:
    """What a curation job needs to know of its raw dataset (from curation's own dataset catalog)."""

    storage_uri: str
    checksum_sha256: str = ""
    classification: int = 0                   # events_pb2.DataClassification
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CurationJobState:
    job_id: str = ""
    tenant_id: str = ""
    dataset_id: str = ""
    recipe: str = ""
    config_json: str = ""
    config_sha256: str = ""
    dataset_storage_uri: str = ""
    dataset_checksum_sha256: str = ""
    dataset_classification: int = 0
    dataset_labels: Mapping[str, str] = field(default_factory=dict)
    state: int = 0
    dataset_version_id: str = ""
    manifest_uri: str = ""
    report_uri: str = ""
    error_code: str = ""
    reason: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def finished(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


def decide_request(state: CurationJobState, job_id: str, dataset_id: str, dataset: DatasetFacts, recipe: str,
                   config_json: str, config_sha256: str) -> list[events_pb2.CurationRequested]:
    if state.exists:
        raise FailedPrecondition(f"curation job {job_id} already exists")
    return [events_pb2.CurationRequested(job_id=job_id, dataset_id=dataset_id, recipe=recipe,
                                         config_sha256=config_sha256, config_json=config_json,
                                         dataset_storage_uri=dataset.storage_uri,
                                         dataset_checksum_sha256=dataset.checksum_sha256,
                                         dataset_classification=dataset.classification,  # type: ignore[arg-type]
                                         dataset_labels=dict(dataset.labels))]


def version_created(state: CurationJobState, **fields: object) -> events_pb2.DatasetVersionCreated:
    """The job's DatasetVersionCreated: the version's facts plus the raw dataset's and the run's,
    so consumers of the event need no other service's state."""
    return events_pb2.DatasetVersionCreated(
        dataset_id=state.dataset_id, job_id=state.job_id, recipe=state.recipe,
        dataset_classification=state.dataset_classification,  # type: ignore[arg-type]
        dataset_labels=dict(state.dataset_labels), dataset_checksum_sha256=state.dataset_checksum_sha256,
        dataset_storage_uri=state.dataset_storage_uri, curation_config_sha256=state.config_sha256,
        **fields)  # type: ignore[arg-type]


def decide_complete(state: CurationJobState, created: events_pb2.DatasetVersionCreated
                    ) -> list[events_pb2.DatasetVersionCreated]:
    """Record the version; a job finishes once (a redelivered request changes nothing)."""
    if state.finished:
        return []
    return [created]


def decide_fail(state: CurationJobState, error_code: str, reason: str) -> list[events_pb2.CurationFailed]:
    if state.finished:
        return []
    return [events_pb2.CurationFailed(job_id=state.job_id, dataset_id=state.dataset_id, error_code=error_code,
                                      reason=reason)]


OUTCOMES = ("dataset_version_created", "curation_failed")


def claim_name(job_id: str) -> str:
    """The lease a worker holds while it curates the job (job ids are unique across tenants)."""
    return f"curation:{job_id}"


def report_fence(state: CurationJobState, env: events_pb2.EventEnvelope, claim_holder: str | None) -> str:
    """Why a worker's reported outcome must not be recorded ("" when it may be).

    It must be an outcome of an existing, unfinished job, sent under the claim the job's lease
    names (``claim_holder``; the report's ``causation_id`` is its claim id).
    """
    kind = env.WhichOneof("payload") or ""
    if kind not in OUTCOMES:
        return f"{kind or 'an empty payload'} is not a curation outcome"
    if not state.exists:
        return "no such curation job"
    if state.finished:
        return "the job already has its outcome"
    if not claim_holder or env.causation_id != claim_holder:
        return "the report was not made under the job's current claim"
    return ""


def evolve(state: CurationJobState, env: events_pb2.EventEnvelope) -> CurationJobState:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    if kind == "curation_requested":
        e = env.curation_requested
        return CurationJobState(job_id=e.job_id, tenant_id=env.tenant_id, dataset_id=e.dataset_id, recipe=e.recipe,
                                config_json=e.config_json, config_sha256=e.config_sha256,
                                dataset_storage_uri=e.dataset_storage_uri,
                                dataset_checksum_sha256=e.dataset_checksum_sha256,
                                dataset_classification=e.dataset_classification,
                                dataset_labels=dict(e.dataset_labels), state=REQUESTED, created_at_ms=at,
                                updated_at_ms=at, version=env.aggregate_version)
    if kind == "dataset_version_created":
        e = env.dataset_version_created
        return replace(state, state=SUCCEEDED, dataset_version_id=e.dataset_version_id, manifest_uri=e.manifest_uri,
                       report_uri=e.report_uri, updated_at_ms=at, version=env.aggregate_version)
    if kind == "curation_failed":
        e = env.curation_failed
        return replace(state, state=FAILED, error_code=e.error_code, reason=e.reason, updated_at_ms=at,
                       version=env.aggregate_version)
    return replace(state, version=env.aggregate_version)


def fold(events: list[events_pb2.EventEnvelope]) -> CurationJobState:
    state = CurationJobState()
    for env in events:
        state = evolve(state, env)
    return state
