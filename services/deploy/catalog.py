"""The deploy service's own projection of other services' facts: the model versions it can deploy
(from ModelVersionRegistered) and the outcome of each version's gating evaluation (EvalCompleted or
EvalFailed of a run its registration triggered, with the job's suite and gates; an evaluation asked
for on demand, with gates of its caller's choosing, never decides a promotion). The latest gating
run decides. Deploy never reads the orchestrator's or eval's state.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, insert, select, update

from privtune.v1 import events_pb2
from services.common.consistency import await_projection
from services.common.projection import Projection
from services.common.store.schema import deploy_model_catalog
from services.common.topics import EVAL_EVENTS, MODEL_EVENTS


@dataclass(frozen=True)
class DeployableVersion:
    model_version_id: str
    model_name: str
    kind: str
    artifact_uri: str
    artifact_sha256: str
    base_model_id: str
    base_model_sha256: str
    evaluation_suite_id: str        # "" : the job named no suite, so no evaluation gates apply
    dataset_uri: str                # the dataset version folder it was trained on ("" unknown)
    eval_id: str                    # the gating evaluation ("" none requested yet)
    eval_done: bool
    eval_passed: bool
    eval_reason: str


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    key = deploy_model_catalog.c.tenant_id == env.tenant_id
    if kind == "model_version_registered":
        e = env.model_version_registered
        where = (key, deploy_model_catalog.c.model_version_id == e.model_version_id)
        found = conn.execute(select(deploy_model_catalog.c.registered_at_ms).where(*where)).first()
        if found is not None and found.registered_at_ms > 0:
            return  # a version is registered once
        facts = dict(model_name=e.model_name, kind=e.kind or "adapter", artifact_uri=e.artifact_uri,
                     artifact_sha256=e.artifact_sha256, base_model_id=e.base_model_id,
                     base_model_sha256=e.base_model_sha256, evaluation_suite_id=e.evaluation_suite_id,
                     dataset_uri=e.dataset_uri, registered_at_ms=max(at, 1))
        if found is not None:  # its evaluation's events came first (another topic): keep what they said
            conn.execute(update(deploy_model_catalog).where(*where).values(**facts))
        else:
            conn.execute(insert(deploy_model_catalog).values(tenant_id=env.tenant_id,
                                                             model_version_id=e.model_version_id, eval_id="",
                                                             eval_passed=0, eval_reason="", eval_at_ms=0, **facts))
    elif kind == "eval_requested" and env.eval_requested.trigger == "training_completed":
        e = env.eval_requested
        _placeholder(conn, env.tenant_id, e.model_version_id)
        conn.execute(update(deploy_model_catalog).where(
            key, deploy_model_catalog.c.model_version_id == e.model_version_id,
        ).values(eval_id=e.eval_id, eval_passed=0, eval_reason="", eval_at_ms=0))
    elif kind in ("eval_completed", "eval_failed"):
        if kind == "eval_completed":
            e = env.eval_completed
            version, passed, reason, eval_id = e.model_version_id, e.passed, e.reason, e.eval_id
        else:
            f = env.eval_failed
            version, passed, reason, eval_id = f.model_version_id, False, f"the evaluation failed: {f.reason}", f.eval_id
        if not version:
            return
        # only the version's gating run (the one its registration asked for) decides
        conn.execute(update(deploy_model_catalog).where(
            key, deploy_model_catalog.c.model_version_id == version, deploy_model_catalog.c.eval_id == eval_id,
        ).values(eval_passed=int(passed), eval_reason=reason[:2000], eval_at_ms=at))


def _placeholder(conn: Connection, tenant_id: str, model_version_id: str) -> None:
    """A row for a version whose registration has not arrived yet (model and eval events travel on different
    topics, so on Kafka an evaluation can be seen first); unregistered rows are never deployable."""
    where = (deploy_model_catalog.c.tenant_id == tenant_id,
             deploy_model_catalog.c.model_version_id == model_version_id)
    if conn.execute(select(deploy_model_catalog.c.kind).where(*where)).first() is None:
        conn.execute(insert(deploy_model_catalog).values(
            tenant_id=tenant_id, model_version_id=model_version_id, model_name="", kind="", artifact_uri="",
            artifact_sha256="", base_model_id="", base_model_sha256="", evaluation_suite_id="", dataset_uri="",
            eval_id="", eval_passed=0, eval_reason="", eval_at_ms=0, registered_at_ms=0))


PROJECTION = Projection(name="deploy.catalog", topics=(MODEL_EVENTS, EVAL_EVENTS), tables=(deploy_model_catalog,),
                        apply=apply)


def find_version(engine: Engine, tenant_id: str, model_version_id: str,
                 wait_seconds: float = 2.0) -> DeployableVersion | None:
    """The version as deploy knows it, waiting briefly for one registered a moment ago; None when unknown."""

    def lookup() -> DeployableVersion | None:
        with engine.connect() as conn:
            row = conn.execute(select(deploy_model_catalog).where(
                deploy_model_catalog.c.tenant_id == tenant_id,
                deploy_model_catalog.c.model_version_id == model_version_id)).mappings().first()
        if row is None or row["registered_at_ms"] == 0:
            return None
        return DeployableVersion(
            model_version_id=row["model_version_id"], model_name=row["model_name"], kind=row["kind"],
            artifact_uri=row["artifact_uri"], artifact_sha256=row["artifact_sha256"],
            base_model_id=row["base_model_id"], base_model_sha256=row["base_model_sha256"],
            evaluation_suite_id=row["evaluation_suite_id"], dataset_uri=row["dataset_uri"], eval_id=row["eval_id"],
            eval_done=row["eval_at_ms"] > 0, eval_passed=bool(row["eval_passed"]), eval_reason=row["eval_reason"])

    return await_projection(lookup, wait_seconds)
