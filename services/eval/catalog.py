"""The eval service's own projections of other services' facts: model versions (the candidates it
can evaluate, from ModelVersionRegistered) and dataset versions (where a suite's domain split
comes from, from DatasetVersionCreated). Eval never reads the orchestrator's or curation's state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select

from privtune.v1 import events_pb2
from services.common.consistency import await_projection
from services.common.eval_gates import gates_dict
from services.common.projection import Projection
from services.common.store.schema import eval_dataset_catalog, eval_model_catalog
from services.common.topics import CURATION_EVENTS, MODEL_EVENTS


@dataclass(frozen=True)
class ModelVersionFacts:
    model_version_id: str
    job_id: str
    kind: str
    artifact_uri: str
    artifact_sha256: str
    base_model_id: str
    base_model_sha256: str
    dataset_version_id: str
    dataset_uri: str
    evaluation_suite_id: str
    gates: dict[str, float]
    dataset_manifest_sha256: str = ""


def facts_of(e: events_pb2.ModelVersionRegistered) -> ModelVersionFacts:
    return ModelVersionFacts(
        model_version_id=e.model_version_id, job_id=e.job_id, kind=e.kind or "adapter", artifact_uri=e.artifact_uri,
        artifact_sha256=e.artifact_sha256, base_model_id=e.base_model_id, base_model_sha256=e.base_model_sha256,
        dataset_version_id=e.dataset_version_id, dataset_uri=e.dataset_uri,
        evaluation_suite_id=e.evaluation_suite_id, gates=gates_dict(e.eval_gates),
        dataset_manifest_sha256=e.dataset_manifest_sha256)


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    if kind == "model_version_registered":
        e = env.model_version_registered
        key = (eval_model_catalog.c.tenant_id == env.tenant_id,
               eval_model_catalog.c.model_version_id == e.model_version_id)
        if conn.execute(select(eval_model_catalog.c.job_id).where(*key)).first() is not None:
            return  # a version is registered once
        f = facts_of(e)
        conn.execute(insert(eval_model_catalog).values(
            tenant_id=env.tenant_id, model_version_id=f.model_version_id, job_id=f.job_id, kind=f.kind,
            artifact_uri=f.artifact_uri, artifact_sha256=f.artifact_sha256, base_model_id=f.base_model_id,
            base_model_sha256=f.base_model_sha256, dataset_version_id=f.dataset_version_id,
            dataset_uri=f.dataset_uri, evaluation_suite_id=f.evaluation_suite_id,
            gates_json=json.dumps(f.gates, sort_keys=True), dataset_manifest_sha256=f.dataset_manifest_sha256,
            registered_at_ms=at))
    elif kind == "dataset_version_created":
        e = env.dataset_version_created
        key = (eval_dataset_catalog.c.tenant_id == env.tenant_id,
               eval_dataset_catalog.c.dataset_version_id == e.dataset_version_id)
        if conn.execute(select(eval_dataset_catalog.c.manifest_uri).where(*key)).first() is not None:
            return  # the first event of a version wins (curation may make the same version twice)
        conn.execute(insert(eval_dataset_catalog).values(
            tenant_id=env.tenant_id, dataset_version_id=e.dataset_version_id, manifest_uri=e.manifest_uri,
            manifest_sha256=e.manifest_sha256, created_at_ms=at))


PROJECTION = Projection(name="eval.catalog", topics=(MODEL_EVENTS, CURATION_EVENTS),
                        tables=(eval_model_catalog, eval_dataset_catalog), apply=apply)


def find_model_version(engine: Engine, tenant_id: str, model_version_id: str,
                       wait_seconds: float = 2.0) -> ModelVersionFacts | None:
    """The version's facts, waiting briefly for one registered a moment ago; None when unknown."""

    def lookup() -> ModelVersionFacts | None:
        with engine.connect() as conn:
            row = conn.execute(select(eval_model_catalog).where(
                eval_model_catalog.c.tenant_id == tenant_id,
                eval_model_catalog.c.model_version_id == model_version_id)).mappings().first()
        if row is None:
            return None
        return ModelVersionFacts(
            model_version_id=row["model_version_id"], job_id=row["job_id"], kind=row["kind"],
            artifact_uri=row["artifact_uri"], artifact_sha256=row["artifact_sha256"],
            base_model_id=row["base_model_id"], base_model_sha256=row["base_model_sha256"],
            dataset_version_id=row["dataset_version_id"], dataset_uri=row["dataset_uri"],
            evaluation_suite_id=row["evaluation_suite_id"], gates=json.loads(row["gates_json"]),
            dataset_manifest_sha256=row["dataset_manifest_sha256"])

    return await_projection(lookup, wait_seconds)


def find_dataset_version(engine: Engine, tenant_id: str, dataset_version_id: str,
                         wait_seconds: float = 2.0) -> tuple[str, str] | None:
    """(manifest URI, manifest sha256) of the version; None when unknown."""

    def lookup() -> tuple[str, str] | None:
        with engine.connect() as conn:
            row = conn.execute(select(eval_dataset_catalog.c.manifest_uri, eval_dataset_catalog.c.manifest_sha256)
                               .where(eval_dataset_catalog.c.tenant_id == tenant_id,
                                      eval_dataset_catalog.c.dataset_version_id == dataset_version_id)).first()
        return (row.manifest_uri, row.manifest_sha256) if row is not None else None

    return await_projection(lookup, wait_seconds)
