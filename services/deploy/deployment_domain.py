"""The deployment aggregate (pure): its states, the events that move it, and who may move it.

    Requested ─► Approved ─► PoolDeployed ─► Healthy ─► (Shadowing) ─► TrafficFlipped ─► Verified
        │            │            │             │            │               │
        └────────────┴────────────┴─────────────┴────────────┴───────────────┴─► RolledBack | Failed

A deployment to ``production`` must be approved by a caller with the ``approver`` role who is
not the requester; other environments are approved by their request. Each decision takes the
folded state and returns the events to append, or raises DeploymentRefused with a stable code
and a reason a person can act on; the stream's version makes every append a compare-and-set, so
two racing approvers or a flip racing a rollback cannot both win.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from privtune.v1 import events_pb2

PRODUCTION = "production"
APPROVER_ROLE = "approver"
STREAM = "deployment"

REQUESTED, APPROVED, POOL_DEPLOYED, HEALTHY, SHADOWING, FLIPPED, VERIFIED, ROLLED_BACK, FAILED = (
    "requested", "approved", "pool_deployed", "healthy", "shadowing", "traffic_flipped", "verified", "rolled_back",
    "failed")
TERMINAL = (VERIFIED, ROLLED_BACK, FAILED)
# before any traffic moved a rollback cancels; after, it moves traffic back (a failed deployment still holding
# traffic, e.g. one whose gates broke without rollback_on_regression, can be rolled back too)
ROLLBACK_FROM = (REQUESTED, APPROVED, POOL_DEPLOYED, HEALTHY, SHADOWING, FLIPPED, VERIFIED)


class DeploymentRefused(Exception):
    """A command the deployment's state or the caller's rights do not allow. ``code`` is stable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class DeploymentState:
    deployment_id: str = ""
    state: str = ""
    request: events_pb2.DeploymentRequested = field(default_factory=events_pb2.DeploymentRequested)
    approver: str = ""
    pool: str = ""                     # the candidate pool this deployment brought up
    previous_pool: str = ""            # where traffic was before the flip (where a rollback goes)
    rolled_back: events_pb2.RolledBack | None = None
    failed: events_pb2.DeploymentFailed | None = None
    shadow: events_pb2.ShadowJudged | None = None
    gates_passed: tuple[str, ...] = ()
    weight_percent: int = 0            # the share of the endpoint's traffic it answers now
    previous_model_version_id: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0
    version: int = 0

    @property
    def exists(self) -> bool:
        return bool(self.state)

    @property
    def needs_approval(self) -> bool:
        return self.request.environment == PRODUCTION


def fold(events: Sequence[events_pb2.EventEnvelope]) -> DeploymentState:
    s = DeploymentState()
    for env in events:
        kind = env.WhichOneof("payload")
        s.version = env.aggregate_version or s.version + 1
        s.updated_at_ms = env.time.ToMilliseconds()
        if kind == "deployment_requested":
            s.deployment_id, s.state = env.deployment_requested.deployment_id, REQUESTED
            s.request.CopyFrom(env.deployment_requested)
            s.created_at_ms = s.updated_at_ms
        elif kind == "deployment_approved":
            s.state, s.approver = APPROVED, env.deployment_approved.approver
            s.gates_passed = tuple(env.deployment_approved.gates_passed)
        elif kind == "pool_deployed":
            s.state, s.pool = POOL_DEPLOYED, env.pool_deployed.pool
        elif kind == "pool_healthy":
            s.state = HEALTHY
        elif kind == "shadow_started":
            s.state = SHADOWING
        elif kind == "shadow_judged":
            s.shadow = events_pb2.ShadowJudged()
            s.shadow.CopyFrom(env.shadow_judged)
        elif kind == "traffic_flipped":
            e = env.traffic_flipped
            s.state, s.weight_percent = FLIPPED, e.weight_percent
            if not s.previous_pool or s.previous_pool == e.to_pool:  # canary steps keep the first step's origin
                s.previous_pool, s.previous_model_version_id = e.from_pool, e.previous_model_version_id
        elif kind == "deployment_verified":
            s.state = VERIFIED
        elif kind == "rolled_back":
            s.state, s.weight_percent = ROLLED_BACK, 0
            s.rolled_back = events_pb2.RolledBack()
            s.rolled_back.CopyFrom(env.rolled_back)
        elif kind == "deployment_failed":  # a deployment failing after it took traffic keeps it until rolled back
            s.state = FAILED
            s.failed = events_pb2.DeploymentFailed()
            s.failed.CopyFrom(env.deployment_failed)
    return s


def _require(state: DeploymentState, allowed: Sequence[str], action: str) -> None:
    if not state.exists:
        raise DeploymentRefused("not_found", "no such deployment")
    if state.state not in allowed:
        raise DeploymentRefused("wrong_state", f"cannot {action} a deployment that is {state.state.replace('_', ' ')}"
                                               f" (it must be {' or '.join(a.replace('_', ' ') for a in allowed)})")


def request(state: DeploymentState, event: events_pb2.DeploymentRequested) -> list[events_pb2.DeploymentRequested]:
    """Validate a new request (``event`` as the API built it). Production requests wait for an approver."""
    if state.exists:
        raise DeploymentRefused("already_exists", f"deployment {event.deployment_id!r} exists already")
    if not event.model_version_id:
        raise DeploymentRefused("invalid_argument", "model_version_id is required")
    if not event.environment:
        raise DeploymentRefused("invalid_argument", "environment is required (e.g. staging, production)")
    if not event.requested_by:
        raise DeploymentRefused("invalid_argument", "the requester must be known")
    if event.drain_seconds > 3600 or event.verify_seconds > 86_400:
        raise DeploymentRefused("invalid_argument", "drain_seconds is at most 3600 and verify_seconds at most 86400")
    gates = event.metric_gates
    if gates.HasField("max_error_rate") and not 0.0 <= gates.max_error_rate <= 1.0:
        raise DeploymentRefused("invalid_argument", "metric_gates.max_error_rate must be between 0 and 1")
    if gates.HasField("p95_latency_ms") and not (math.isfinite(gates.p95_latency_ms) and gates.p95_latency_ms > 0):
        raise DeploymentRefused("invalid_argument", "metric_gates.p95_latency_ms must be a positive number")
    if gates.HasField("min_requests") and not 1 <= gates.min_requests <= 1_000_000:
        raise DeploymentRefused("invalid_argument", "metric_gates.min_requests must be between 1 and 1000000")
    if gates.HasField("max_toxic_rate") and not 0.0 <= gates.max_toxic_rate <= 1.0:
        raise DeploymentRefused("invalid_argument", "metric_gates.max_toxic_rate must be between 0 and 1")
    if event.strategy == events_pb2.ROLLOUT_STRATEGY_CANARY:
        steps = list(event.canary_steps_percent)
        if not steps or steps != sorted(set(steps)) or not 0 < steps[0] or steps[-1] > 100:
            raise DeploymentRefused("invalid_argument", "canary_steps_percent must rise strictly within 1..100")
    return [event]


def approve(state: DeploymentState, approver: str, roles: Sequence[str],
            gates_passed: Sequence[str] = ()) -> list[events_pb2.DeploymentApproved]:
    """The approver rule: the ``approver`` role, and never the requester (four eyes)."""
    _require(state, (REQUESTED,), "approve")
    if APPROVER_ROLE not in roles:
        raise DeploymentRefused("permission_denied", f"approving a deployment needs the {APPROVER_ROLE!r} role")
    if approver == state.request.requested_by:
        raise DeploymentRefused("permission_denied", "the requester of a deployment cannot approve it: another "
                                                     "approver must")
    return [events_pb2.DeploymentApproved(deployment_id=state.deployment_id, approver=approver,
                                          gates_passed=list(gates_passed))]


def pool_deployed(state: DeploymentState, pool: str, endpoint: str, replicas: int) -> list[events_pb2.PoolDeployed]:
    allowed = (APPROVED,) if state.needs_approval else (REQUESTED, APPROVED)
    if state.exists and state.state == REQUESTED and state.needs_approval:
        raise DeploymentRefused("approval_required", "a production deployment needs an approver before any pool "
                                                     "is brought up")
    _require(state, allowed, "bring up a pool for")
    return [events_pb2.PoolDeployed(deployment_id=state.deployment_id, pool=pool,
                                    model_version_id=state.request.model_version_id, endpoint=endpoint,
                                    replicas=replicas)]


def pool_healthy(state: DeploymentState) -> list[events_pb2.PoolHealthy]:
    _require(state, (POOL_DEPLOYED,), "mark healthy")
    return [events_pb2.PoolHealthy(deployment_id=state.deployment_id, pool=state.pool)]


def shadow_started(state: DeploymentState) -> list[events_pb2.ShadowStarted]:
    _require(state, (HEALTHY,), "start shadowing")
    if state.request.strategy != events_pb2.ROLLOUT_STRATEGY_SHADOW:
        raise DeploymentRefused("wrong_strategy", "only a shadow deployment shadows")
    return [events_pb2.ShadowStarted(deployment_id=state.deployment_id, pool=state.pool)]


def shadow_judged(state: DeploymentState, judged: events_pb2.ShadowJudged) -> list[events_pb2.ShadowJudged]:
    _require(state, (SHADOWING,), "judge the shadow answers of")
    out = events_pb2.ShadowJudged()
    out.CopyFrom(judged)
    out.deployment_id, out.pool = state.deployment_id, state.pool
    return [out]


def traffic_flipped(state: DeploymentState, from_pool: str, weight_percent: int = 100, *,
                    previous_model_version_id: str = "", routing_version: int = 0) -> list[events_pb2.TrafficFlipped]:
    """Traffic (``weight_percent`` of it) to the candidate; a canary's later steps move from FLIPPED again."""
    _require(state, (HEALTHY, SHADOWING, FLIPPED), "move traffic for")
    if not 0 < weight_percent <= 100:
        raise DeploymentRefused("invalid_argument", "weight_percent must be from 1 to 100")
    if state.state == FLIPPED and weight_percent <= state.weight_percent:
        raise DeploymentRefused("wrong_state", f"the deployment answers {state.weight_percent}% already")
    if state.state == SHADOWING and (state.shadow is None or not state.shadow.passed):
        raise DeploymentRefused("shadow_gates", "a shadow deployment takes traffic only after its shadow answers "
                                                "passed their gates")
    r = state.request
    return [events_pb2.TrafficFlipped(deployment_id=state.deployment_id, from_pool=from_pool, to_pool=state.pool,
                                      weight_percent=weight_percent, model_version_id=r.model_version_id,
                                      previous_model_version_id=previous_model_version_id,
                                      environment=r.environment, endpoint_name=r.endpoint_name,
                                      routing_version=routing_version)]


def verified(state: DeploymentState, requests: int, error_rate: float,
             p95_latency_ms: float) -> list[events_pb2.DeploymentVerified]:
    _require(state, (FLIPPED,), "verify")
    return [events_pb2.DeploymentVerified(deployment_id=state.deployment_id, pool=state.pool, requests=requests,
                                          error_rate=error_rate, p95_latency_ms=p95_latency_ms)]


def rolled_back(state: DeploymentState, trigger: str, reason: str, *, automatic: bool = False,
                to_pool: str = "", model_version_id: str = "") -> list[events_pb2.RolledBack]:
    """Back to the pool that had the traffic (``trigger``: "manual" or the gate that fired). Before any flip the
    traffic never moved: the rollback only takes the candidate down (``to_pool``/``model_version_id``: where
    the traffic is)."""
    if not holds_traffic(state):
        _require(state, ROLLBACK_FROM, "roll back")
    if not trigger:
        raise DeploymentRefused("invalid_argument", "a rollback names its trigger (manual, or the gate that fired)")
    moved = holds_traffic(state)
    r = state.request
    # from_model_version_id only when traffic really moved back: the registry's alias follows only those
    return [events_pb2.RolledBack(
        deployment_id=state.deployment_id, to_pool=state.previous_pool if moved else to_pool, trigger=trigger,
        reason=reason, model_version_id=state.previous_model_version_id if moved else model_version_id,
        from_model_version_id=r.model_version_id if moved else "", environment=r.environment,
        endpoint_name=r.endpoint_name, automatic=automatic)]


def holds_traffic(state: DeploymentState) -> bool:
    """Whether the deployment answers part of its endpoint's traffic now (a rollback moves it back)."""
    return state.state in (FLIPPED, VERIFIED) or (state.state == FAILED and state.weight_percent > 0)


def failed(state: DeploymentState, error_code: str, reason: str) -> list[events_pb2.DeploymentFailed]:
    _require(state, (REQUESTED, APPROVED, POOL_DEPLOYED, HEALTHY, SHADOWING, FLIPPED), "fail")
    return [events_pb2.DeploymentFailed(deployment_id=state.deployment_id, error_code=error_code, reason=reason)]
