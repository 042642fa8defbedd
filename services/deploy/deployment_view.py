"""ListDeployments' rows: a consumer projection of the deployment events (GetDeployment folds the stream)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select, update

from privtune.v1 import events_pb2
from services.common.projection import Projection
from services.common.store.schema import deployment_view
from services.common.topics import DEPLOYMENT_EVENTS
from services.deploy import deployment_domain as domain

STATE_NUMBERS = {domain.REQUESTED: 1, domain.APPROVED: 2, domain.POOL_DEPLOYED: 3, domain.HEALTHY: 4,
                 domain.SHADOWING: 5, domain.FLIPPED: 6, domain.VERIFIED: 7, domain.ROLLED_BACK: 8,
                 domain.FAILED: 9}


def apply(conn: Connection, env: events_pb2.EventEnvelope) -> None:
    kind = env.WhichOneof("payload")
    at = env.time.ToMilliseconds()
    payload = getattr(env, kind)
    deployment_id = getattr(payload, "deployment_id", "")
    if not deployment_id:
        return
    key = (deployment_view.c.tenant_id == env.tenant_id, deployment_view.c.deployment_id == deployment_id)
    if kind == "deployment_requested":
        if conn.execute(select(deployment_view.c.state).where(*key)).first() is not None:
            return
        e = env.deployment_requested
        conn.execute(insert(deployment_view).values(
            tenant_id=env.tenant_id, deployment_id=deployment_id, model_version_id=e.model_version_id,
            environment=e.environment, endpoint_name=e.endpoint_name, strategy=int(e.strategy),
            state=STATE_NUMBERS[domain.REQUESTED], requested_by=e.requested_by, approver="", pool="",
            weight_percent=0, previous_model_version_id="", rollback_trigger="", reason="", error_code="",
            created_at_ms=at, updated_at_ms=at))
        return
    values: dict[str, object] = {"updated_at_ms": at}
    if kind == "deployment_approved":
        values.update(state=STATE_NUMBERS[domain.APPROVED], approver=env.deployment_approved.approver)
    elif kind == "pool_deployed":
        values.update(state=STATE_NUMBERS[domain.POOL_DEPLOYED], pool=env.pool_deployed.pool)
    elif kind == "pool_healthy":
        values.update(state=STATE_NUMBERS[domain.HEALTHY])
    elif kind == "shadow_started":
        values.update(state=STATE_NUMBERS[domain.SHADOWING])
    elif kind == "shadow_judged":
        if not env.shadow_judged.passed:
            values.update(reason=env.shadow_judged.reason[:2000])
    elif kind == "traffic_flipped":
        e = env.traffic_flipped
        values.update(state=STATE_NUMBERS[domain.FLIPPED], weight_percent=e.weight_percent)
        if e.previous_model_version_id:
            values.update(previous_model_version_id=e.previous_model_version_id)
    elif kind == "deployment_verified":
        values.update(state=STATE_NUMBERS[domain.VERIFIED])
    elif kind == "rolled_back":
        e = env.rolled_back
        values.update(state=STATE_NUMBERS[domain.ROLLED_BACK], weight_percent=0, rollback_trigger=e.trigger,
                      reason=e.reason[:2000])
    elif kind == "deployment_failed":
        e = env.deployment_failed
        values.update(state=STATE_NUMBERS[domain.FAILED], error_code=e.error_code,
                      reason=e.reason[:2000])
    else:
        return
    # events of one stream arrive in order (one bus key), so a later event never lands before an earlier one
    conn.execute(update(deployment_view).where(*key).values(**values))


PROJECTION = Projection(name="deploy.deployments", topics=(DEPLOYMENT_EVENTS,), tables=(deployment_view,),
                        apply=apply)
