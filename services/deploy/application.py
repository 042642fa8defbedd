"""Deployment application service: request, approve, roll back, read; and the one way deployment events are
recorded (``DeploymentRecords.record``: fold the stream, decide, append with compare-and-set).

The rollout itself (pools, routing, gates) is the manager's (services/deploy/manager.py); the API
tells it about new work and asks it for manual rollbacks.
"""

from __future__ import annotations

import re
import uuid
from typing import Callable, Protocol, Sequence

from google.protobuf.message import Message
from sqlalchemy import Connection, Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore, queries
from services.common.consistency import await_projection
from services.common.envelope import Causation, new_envelope
from services.common.errors import (
    AlreadyExists, ConcurrencyConflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Resource)
from services.common.idempotency import RequestIdTaken, claim_request_id, created_by_request
from services.common.identity import Caller
from services.common.limits import quote
from services.common.store.engine import reader
from services.common.store.schema import deployment_view, unique_names
from services.deploy import catalog, deployment_domain as domain, endpoints
from services.deploy.deployment_view import STATE_NUMBERS

SOURCE = "privtune/deploy"
REQUEST_KIND = "deployment-request"
ENDPOINT_KIND = "deployment-endpoint"   # unique_names: endpoint -> the environment it serves
MANAGER_ACTOR = "service:deploy-manager"
ENDPOINT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ENVIRONMENT_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")   # it names a registry alias
DEFAULT_DRAIN_SECONDS, DEFAULT_VERIFY_SECONDS = 30, 300
_REFUSALS = {"not_found": NotFound, "already_exists": AlreadyExists, "permission_denied": PermissionDenied,
             "invalid_argument": InvalidArgument}


def refusal_error(exc: domain.DeploymentRefused) -> Exception:
    """The API error for an aggregate refusal (its stable code as the reason)."""
    kind = _REFUSALS.get(exc.code, FailedPrecondition)
    return kind(str(exc), reason=f"DEPLOYMENT_{exc.code.upper()}")


def endpoint_environment(source: Engine | Connection, tenant_id: str, endpoint: str) -> str:
    """The environment ``endpoint`` is bound to ("" : no deployment named it yet)."""
    query = select(unique_names.c.aggregate_id).where(unique_names.c.tenant_id == tenant_id,
                                                      unique_names.c.kind == ENDPOINT_KIND,
                                                      unique_names.c.name == endpoint)
    if isinstance(source, Connection):
        row = source.execute(query).first()
    else:
        with source.connect() as conn:
            row = conn.execute(query).first()
    return str(row.aggregate_id) if row is not None else ""


def eval_gate_refusal(version: catalog.DeployableVersion) -> str:
    """Why the version may not be deployed yet ("" : it may): a job with a suite needs a passed evaluation."""
    if not version.evaluation_suite_id:
        return ""
    if not version.eval_done:
        return (f"model version {version.model_version_id} has no finished evaluation yet (its job names suite "
                f"{version.evaluation_suite_id}); wait for it (privtune eval list) and request again")
    if not version.eval_passed:
        return (f"model version {version.model_version_id} failed its evaluation gates in {version.eval_id}: "
                f"{version.eval_reason[:500]}")
    return ""


class Manager(Protocol):
    gateway_url: str

    def kick(self, tenant_id: str, deployment_id: str) -> None: ...

    def rollback(self, caller: Caller, deployment_id: str, reason: str) -> domain.DeploymentState: ...


class DeploymentRecords:
    """Load a deployment; record a decision on it (compare-and-set on the stream's version)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, tenant_id: str, deployment_id: str) -> domain.DeploymentState:
        with reader(self.engine).connect() as conn:
            return domain.fold(eventstore.load_stream(conn, tenant_id, deployment_id))

    def record(self, tenant_id: str, deployment_id: str, actor: str,
               decide: Callable[[domain.DeploymentState], Sequence[Message]], attempts: int = 3,
               ) -> domain.DeploymentState:
        """Append what ``decide(state)`` returns. A concurrent writer makes it decide again on the new state
        (up to ``attempts`` times); DeploymentRefused from ``decide`` passes through."""
        for attempt in range(attempts):
            try:
                # the conflict leaves the transaction (rolled back whole), not caught inside it: on
                # PostgreSQL the failed INSERT has aborted it, and leaving the block normally would COMMIT
                with self.engine.begin() as conn:
                    events = eventstore.load_stream(conn, tenant_id, deployment_id)
                    state = domain.fold(events)
                    payloads = decide(state)
                    correlation = events[0].correlation_id if events else uuid.uuid4().hex
                    envs = [new_envelope(p, subject=deployment_id, tenant_id=tenant_id, source=SOURCE,
                                         causation=Causation(actor=actor, correlation_id=correlation))
                            for p in payloads]
                    eventstore.append(conn, domain.STREAM, envs, expected_version=state.version)
            except ConcurrencyConflict:
                if attempt == attempts - 1:
                    raise
                continue
            return domain.fold([*events, *envs])
        raise AssertionError("unreachable")


DEFAULT_ENVIRONMENTS = ("staging", "production")


class DeploymentApplication:
    """``environments``: where deployments may go (each names a registry alias; ``production`` needs an approver)."""

    def __init__(self, engine: Engine, manager: Manager | None = None,
                 environments: Sequence[str] = DEFAULT_ENVIRONMENTS) -> None:
        self.engine = engine
        self.environments = tuple(environments)
        self.records = DeploymentRecords(engine)
        self.manager = manager

    @property
    def gateway_url(self) -> str:
        return self.manager.gateway_url if self.manager is not None else ""

    def create(self, caller: Caller, *, model_version_id: str, environment: str,
               strategy: int = events_pb2.ROLLOUT_STRATEGY_BLUE_GREEN, canary_steps_percent: Sequence[int] = (),
               drain_seconds: int | None = None, rollback_on_regression: bool = False,
               metric_gates: events_pb2.TrafficGateLimits | None = None, endpoint_name: str = "",
               verify_seconds: int | None = None, request_id: str = "") -> domain.DeploymentState:
        if not model_version_id:
            raise InvalidArgument("model_version_id is required: a registered version, e.g. 'support-assistant/v2'",
                                  field="model_version_id")
        if not ENVIRONMENT_RE.fullmatch(environment or ""):
            raise InvalidArgument("environment must be lowercase letters, digits and '-' (it names the registry "
                                  "alias the deployment moves), e.g. 'staging' or 'production'", field="environment")
        if strategy not in (events_pb2.ROLLOUT_STRATEGY_BLUE_GREEN, events_pb2.ROLLOUT_STRATEGY_CANARY,
                            events_pb2.ROLLOUT_STRATEGY_SHADOW, events_pb2.ROLLOUT_STRATEGY_UNSPECIFIED):
            raise InvalidArgument("strategy must be blue-green, canary or shadow", field="strategy")
        if request_id and len(request_id) > 128:
            raise InvalidArgument("request_id must be at most 128 characters", field="request_id")
        if request_id:
            found = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
            if found:
                return self.get(caller, found)
        version = catalog.find_version(self.engine, caller.tenant_id, model_version_id)
        if version is None:
            raise NotFound(f"model version {quote(model_version_id)} not found in tenant {caller.tenant_id!r}; "
                           "list versions with `privtune registry versions`", reason="MODEL_VERSION_NOT_FOUND",
                           resource=Resource("privtune.v1.ModelVersion", model_version_id))
        refusal = eval_gate_refusal(version)
        if refusal:
            raise FailedPrecondition(refusal, reason="EVAL_GATES_NOT_PASSED")
        if environment not in self.environments:
            raise InvalidArgument(f"environment {environment!r} is not one this platform deploys to "
                                  f"({', '.join(self.environments)}; PRIVTUNE_DEPLOY_ENVIRONMENTS)",
                                  field="environment")
        endpoint = endpoint_name or (version.model_name if environment == domain.PRODUCTION
                                     else f"{version.model_name}-{environment}")[:128]
        if not ENDPOINT_RE.fullmatch(endpoint):
            raise InvalidArgument("endpoint_name must be 1-128 letters, digits and '._-', starting with a letter or "
                                  "digit", field="endpoint_name")
        self._check_environment(caller.tenant_id, endpoint, environment)
        busy = self._rollout_in_progress(caller.tenant_id, endpoint)
        if busy:
            raise FailedPrecondition(f"deployment {busy} is still rolling out on endpoint {endpoint!r}; wait until it "
                                     "is verified, or roll it back, then request again", reason="ENDPOINT_BUSY",
                                     resource=Resource("privtune.v1.Deployment", busy))
        deployment_id = f"dep-{uuid.uuid4().hex[:16]}"
        event = events_pb2.DeploymentRequested(
            deployment_id=deployment_id, model_version_id=version.model_version_id, environment=environment,
            strategy=strategy or events_pb2.ROLLOUT_STRATEGY_BLUE_GREEN, canary_steps_percent=list(canary_steps_percent),
            requested_by=caller.actor,
            drain_seconds=DEFAULT_DRAIN_SECONDS if drain_seconds is None else drain_seconds,
            rollback_on_regression=rollback_on_regression, metric_gates=metric_gates, endpoint_name=endpoint,
            verify_seconds=DEFAULT_VERIFY_SECONDS if verify_seconds is None else verify_seconds,
            eval_id=version.eval_id if version.evaluation_suite_id else "")
        try:
            with self.engine.begin() as conn:
                if request_id:
                    claim_request_id(conn, caller.tenant_id, REQUEST_KIND, request_id, deployment_id)
                try:  # the endpoint's environment is bound by its first request, in the same transaction
                    claim_request_id(conn, caller.tenant_id, ENDPOINT_KIND, endpoint, environment)
                except RequestIdTaken:
                    self._check_environment(caller.tenant_id, endpoint, environment, conn)
                payloads = domain.request(domain.DeploymentState(), event)
                env = new_envelope(payloads[0], subject=deployment_id, tenant_id=caller.tenant_id, source=SOURCE,
                                   causation=Causation(actor=caller.actor, correlation_id=uuid.uuid4().hex))
                eventstore.append(conn, domain.STREAM, [env], expected_version=0)
        except domain.DeploymentRefused as exc:
            raise refusal_error(exc) from None
        except RequestIdTaken:
            found = created_by_request(self.engine, caller.tenant_id, REQUEST_KIND, request_id)
            return self.get(caller, found or "")
        if self.manager is not None:
            self.manager.kick(caller.tenant_id, deployment_id)
        return domain.fold([env])

    def _rollout_in_progress(self, tenant_id: str, endpoint: str) -> str:
        """A deployment of ``endpoint`` not yet verified, rolled back or failed (one rollout at a time)."""
        busy = [n for name, n in STATE_NUMBERS.items() if name not in domain.TERMINAL]
        with reader(self.engine).connect() as conn:
            rows = conn.execute(select(deployment_view.c.deployment_id).where(
                deployment_view.c.tenant_id == tenant_id, deployment_view.c.endpoint_name == endpoint,
                deployment_view.c.state.in_(busy))).all()
        for row in rows:  # the list trails the events: what it calls busy is checked on the stream itself
            if self.records.load(tenant_id, row.deployment_id).state not in domain.TERMINAL:
                return str(row.deployment_id)
        return ""

    def _check_environment(self, tenant_id: str, endpoint: str, environment: str,
                           conn: Connection | None = None) -> None:
        """An endpoint serves one environment, bound by its first request: a staging deployment can never take
        a production endpoint's traffic without production's approvals."""
        bound = endpoint_environment(conn or self.engine, tenant_id, endpoint)
        if bound and bound != environment:
            raise FailedPrecondition(f"endpoint {endpoint!r} serves environment {bound!r}: deploy to it with that "
                                     "environment (and its approvals), or name another endpoint",
                                     reason="ENDPOINT_ENVIRONMENT")

    def approve(self, caller: Caller, deployment_id: str) -> domain.DeploymentState:
        state = self.get(caller, deployment_id)
        version = catalog.find_version(self.engine, caller.tenant_id, state.request.model_version_id, 0)
        refusal = eval_gate_refusal(version) if version is not None else "the model version is unknown"
        if refusal:  # a newer evaluation may have failed since the request
            raise FailedPrecondition(refusal, reason="EVAL_GATES_NOT_PASSED")
        gates = [f"evaluation {version.eval_id}: {version.eval_reason[:200]}"] if version and version.eval_id else []
        try:
            state = self.records.record(caller.tenant_id, deployment_id, caller.actor,
                                        lambda s: domain.approve(s, caller.actor, sorted(caller.roles), gates))
        except domain.DeploymentRefused as exc:
            raise refusal_error(exc) from None
        if self.manager is not None:
            self.manager.kick(caller.tenant_id, deployment_id)
        return state

    def rollback(self, caller: Caller, deployment_id: str, reason: str) -> domain.DeploymentState:
        if len(reason) > 1000:
            raise InvalidArgument("reason must be at most 1000 characters", field="reason")
        self.get(caller, deployment_id)
        if self.manager is None:
            raise FailedPrecondition("this process runs no deployment manager; call the deploy service",
                                     reason="NO_DEPLOYMENT_MANAGER")
        return self.manager.rollback(caller, deployment_id, reason)

    def get(self, caller: Caller, deployment_id: str) -> domain.DeploymentState:
        if not deployment_id or len(deployment_id) > 64:
            raise InvalidArgument("deployment_id is required (dep-..., from CreateDeployment)", field="deployment_id")
        state = self.records.load(caller.tenant_id, deployment_id)
        if not state.exists:
            raise NotFound(f"deployment {quote(deployment_id)} not found in tenant {caller.tenant_id!r}",
                           reason="DEPLOYMENT_NOT_FOUND", resource=Resource("privtune.v1.Deployment", deployment_id))
        return state

    def list(self, caller: Caller, page_size: int, page_token: str, endpoint_name: str = "") -> tuple[list[dict], str]:
        where = [deployment_view.c.endpoint_name == endpoint_name] if endpoint_name else []
        return queries.page(self.engine, deployment_view, ("created_at_ms", "deployment_id"), caller.tenant_id,
                            page_size, page_token, *where, filters={"endpoint_name": endpoint_name})

    def served(self, caller: Caller, request_id: str) -> dict:
        if not re.fullmatch(r"[0-9a-f]{32}", request_id or ""):
            raise InvalidArgument("request_id is the gateway's x-privtune-request-id (32 hex digits)",
                                  field="request_id")
        row = await_projection(lambda: endpoints.find_served(self.engine, caller.tenant_id, request_id), 2.0)
        if row is None:
            raise NotFound(f"no request {request_id} answered for tenant {caller.tenant_id!r}",
                           reason="SERVED_REQUEST_NOT_FOUND")
        return row

