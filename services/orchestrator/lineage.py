"""Lineage: "what model answered this request?" in one call.

deployment -> model version -> training job -> dataset version -> curation job ->
dataset -> raw dataset checksum, with the run's code version, libraries, seed,
hardware and full configuration. The orchestrator's own links (deployment, model
version, job) are read from their event streams, so they are strongly consistent;
the dataset version, its curation job and the raw dataset come from the
orchestrator's projection of ``DatasetVersionCreated`` (which carries them). A
missing link is a NotFound that names it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from sqlalchemy import Connection, Engine

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.errors import InvalidArgument, NotFound
from services.orchestrator import job_domain
from services.orchestrator import registry_domain as registry
from services.orchestrator.catalog import find_dataset_version
from services.orchestrator.registry_application import load_model


@dataclass(frozen=True)
class Lineage:
    deployment_id: str = ""
    model_version_id: str = ""
    artifact_sha256: str = ""
    job_id: str = ""
    config_sha256: str = ""
    config_json: str = ""
    code_version: str = ""
    library_versions: Mapping[str, str] = field(default_factory=dict)
    seed: int = 0
    hardware: str = ""
    base_model_id: str = ""
    base_model_sha256: str = ""
    dataset_version_id: str = ""
    dataset_manifest_sha256: str = ""
    curation_job_id: str = ""
    curation_config_sha256: str = ""
    dataset_id: str = ""
    raw_dataset_checksum_sha256: str = ""
    raw_dataset_storage_uri: str = ""
    requested_by: str = ""
    epsilon_spent: float = 0.0


def lineage(engine: Engine, tenant_id: str, *, deployment_id: str = "", model_version_id: str = "",
            job_id: str = "") -> Lineage:
    """The whole chain from exactly one of ``deployment_id``, ``model_version_id`` or ``job_id``.

    Raises:
        InvalidArgument: not exactly one starting point was given.
        NotFound: naming the first link of the chain that does not exist.
    """
    if sum(bool(x) for x in (deployment_id, model_version_id, job_id)) != 1:
        raise InvalidArgument("give exactly one of deployment_id, model_version_id or job_id")
    with engine.connect() as conn:
        if deployment_id:
            model_version_id = _deployed_version(conn, tenant_id, deployment_id)
        version = _model_version(conn, tenant_id, model_version_id) if model_version_id else None
        job = _job(conn, tenant_id, version.registered.job_id if version else job_id, model_version_id)
        if version is None:
            version = _version_of_job(conn, tenant_id, job)
        created = _dataset_version(conn, tenant_id, job)
    started = job.started
    return Lineage(
        deployment_id=deployment_id, model_version_id=version.model_version_id if version else "",
        artifact_sha256=version.registered.artifact_sha256 if version else job.artifact_sha256, job_id=job.job_id,
        config_sha256=started.config_sha256 or job.request.config_sha256, config_json=job.request.config_json,
        code_version=started.code_version, library_versions=dict(started.library_versions), seed=started.seed,
        hardware=started.hardware, base_model_id=job.request.base_model_id,
        base_model_sha256=started.base_model_sha256, dataset_version_id=created["dataset_version_id"],
        dataset_manifest_sha256=started.dataset_manifest_sha256 or created["manifest_sha256"],
        curation_job_id=created["curation_job_id"], curation_config_sha256=created["curation_config_sha256"],
        dataset_id=created["dataset_id"], raw_dataset_checksum_sha256=created["dataset_checksum_sha256"],
        raw_dataset_storage_uri=created["dataset_storage_uri"],
        requested_by=job.requested_by, epsilon_spent=job.epsilon_spent)


def _first(conn: Connection, tenant_id: str, stream_id: str, payload: str, what: str) -> events_pb2.EventEnvelope:
    for env in eventstore.load_stream(conn, tenant_id, stream_id) if stream_id else []:
        if env.WhichOneof("payload") == payload:
            return env
    raise NotFound(f"{what} not found in tenant {tenant_id!r}")


def _deployed_version(conn: Connection, tenant_id: str, deployment_id: str) -> str:
    env = _first(conn, tenant_id, deployment_id, "deployment_requested", f"deployment {deployment_id!r}")
    if not env.deployment_requested.model_version_id:
        raise NotFound(f"deployment {deployment_id!r} names no model version")
    return env.deployment_requested.model_version_id


def _model_version(conn: Connection, tenant_id: str, model_version_id: str) -> registry.ModelVersion:
    name, ref = registry.split_version_ref(model_version_id)
    state = load_model(conn, tenant_id, name)
    if not state.exists:
        raise NotFound(f"model version {model_version_id!r} not found in tenant {tenant_id!r}: "
                       f"there is no model {name!r}")
    return state.resolve(ref)


def _job(conn: Connection, tenant_id: str, job_id: str, via: str) -> job_domain.TrainingJobState:
    job = job_domain.fold(eventstore.load_stream(conn, tenant_id, job_id))
    if not job.request.job_id:
        source = f" (which produced model version {via!r})" if via else ""
        raise NotFound(f"training job {job_id!r}{source} not found in tenant {tenant_id!r}")
    return job


def _version_of_job(conn: Connection, tenant_id: str, job: job_domain.TrainingJobState) -> registry.ModelVersion | None:
    state = load_model(conn, tenant_id, registry.model_name_for(job))
    version_id = state.version_by_job.get(job.job_id)
    return state.versions[version_id] if version_id else None


def _dataset_version(conn: Connection, tenant_id: str, job: job_domain.TrainingJobState) -> dict:
    """The catalog row of the job's dataset version (from its first DatasetVersionCreated)."""
    wanted = job.request.dataset_version_id
    if not wanted:
        raise NotFound(f"training job {job.job_id!r} names no dataset version (dataset_version_id is empty)")
    row = find_dataset_version(conn, tenant_id, wanted, job.request.dataset_id)
    if row is not None:
        return row
    raise NotFound(f"dataset version {wanted!r} (trained on by job {job.job_id!r}) not found in tenant "
                   f"{tenant_id!r}: no curation job created it")
