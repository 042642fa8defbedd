"""The deployment manager: drives each deployment from request to verified (or rolled back, or failed).

For a deployment it brings up a pool in the endpoint's free slot (blue or green: the one not
answering), checks its health, then moves traffic by the deployment's strategy:

- **blue-green**: all traffic to the new pool at once; requests running on the old pool finish there;
- **canary**: ``canary_steps_percent`` in turn (sticky per caller), each step judged by the traffic
  gates for its share of ``verify_seconds``, the last (100) a full flip;
- **shadow**: every request mirrored to the candidate for ``verify_seconds``; its answers are
  judged (errors, latency, toxicity, leakage: services/deploy/shadow_gates.py) and only a
  candidate that passed takes traffic, blue-green.

After a full flip the gates watch the new pool for ``verify_seconds``; a broken gate rolls
traffic back at once when ``rollback_on_regression`` is set (recorded with the gate that fired),
and otherwise the deployment is Verified. Every step is an event on the deployment's stream
(and so an audit record); a full flip and every rollback also move the registry alias named by
the environment (the orchestrator follows these events).

A pool stays up while it is the endpoint's active or previous pool (so a rollback is instant);
the next deployment's candidate replaces the previous one. On start the manager restores each
endpoint's serving version from the events (pools die with the process), fails rollouts caught
half-way (``interrupted``: request them again) and resumes the rest.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from sqlalchemy import Engine, select

from privtune.v1 import events_pb2
from services.common import eventstore
from services.common.errors import FailedPrecondition, PrivtuneError
from services.common.identity import Caller
from services.common.storage import open_tenant_storage
from services.common.store.schema import stored_events
from services.deploy import catalog, deployment_domain as domain
from services.deploy.application import (
    MANAGER_ACTOR, DeploymentRecords, endpoint_environment, eval_gate_refusal, refusal_error)
from services.deploy.endpoints import EndpointGateway, ServedLog, ServedRow
from services.deploy.gateway import AutomaticRollback, Gateway, PoolUnhealthy, RunningGateway, ShadowRecord
from services.deploy.pools import PoolFailed, PoolLauncher, RunningPool
from services.deploy.routing import Pool, Routing, RoutingTable, StaleRouting, flipped
from services.deploy.shadow_gates import PiiKinds, ShadowAnswer, ShadowLimits, judge
from services.deploy.traffic_gates import TrafficGates, evaluate, p95

log = logging.getLogger(__name__)
SLOTS = ("blue", "green")
SHADOW_KEEP = 10_000


@dataclass
class Endpoint:
    tenant_id: str
    name: str
    gateway: Gateway | None = None          # None until its first pool is healthy
    pools: dict[str, RunningPool] = field(default_factory=dict)
    rollout: threading.Lock = field(default_factory=threading.Lock)   # one rollout at a time
    routing: threading.Lock = field(default_factory=threading.Lock)   # routing changes and pool swaps
    shadow: dict[str, deque[ShadowRecord]] = field(default_factory=lambda: defaultdict(lambda: deque(maxlen=SHADOW_KEEP)))


class Abandon(Exception):
    """The deployment ended meanwhile (a person rolled it back): the rollout stops, its pool comes down."""


class StepFailed(Exception):
    """A rollout step failed; ``code`` is the DeploymentFailed error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _plain(exc: Exception) -> str:
    """An error's message without the loopback addresses of pools (events are read by every viewer)."""
    import re

    return re.sub(r"https?://127\.0\.0\.1:\d+", "a pool process", str(exc))[:500]


def _without_candidate(routing: Routing, by: str, reason: str) -> Routing:
    return replace(routing, version=routing.version + 1, strategy="single", candidate="", canary_weight=0.0,
                   changed_by=by, reason=reason)


def _change_routing(gateway: Gateway, change: Callable[[Routing], Routing | None]) -> Routing | None:
    """Install ``change(current)`` (None: nothing to change), reading again when a concurrent write (the gateway's
    own automatic rollback) got in first."""
    for _ in range(10):
        current = gateway.table.current()
        new = change(current)
        if new is None:
            return None
        try:
            return gateway.table.replace(current.version, new)
        except StaleRouting:
            continue
    raise StaleRouting(-1, gateway.table.current().version)


def _pool(p: RunningPool) -> Pool:
    return Pool(p.name, p.urls, p.model, p.model_version_id)


def _limits(gates: events_pb2.TrafficGateLimits) -> TrafficGates:
    return TrafficGates(max_error_rate=gates.max_error_rate if gates.HasField("max_error_rate") else 0.01,
                        p95_latency_seconds=gates.p95_latency_ms / 1000 if gates.HasField("p95_latency_ms") else 0.0,
                        min_requests=gates.min_requests if gates.HasField("min_requests") else 20).check()


def _shadow_limits(gates: events_pb2.TrafficGateLimits) -> ShadowLimits:
    t = _limits(gates)
    return ShadowLimits(max_error_rate=t.max_error_rate, p95_latency_seconds=t.p95_latency_seconds,
                        min_requests=t.min_requests,
                        max_toxic_rate=gates.max_toxic_rate if gates.HasField("max_toxic_rate") else 0.01,
                        max_leaking_answers=gates.max_leaking_answers if gates.HasField("max_leaking_answers") else 0)


class DeploymentManager:
    def __init__(self, engine: Engine, launcher: PoolLauncher, front: EndpointGateway, served: ServedLog,
                 running: RunningGateway, pii_kinds: PiiKinds, poll_seconds: float = 0.25) -> None:
        self.engine = engine
        self.records = DeploymentRecords(engine)
        self.launcher = launcher
        self.front = front
        self.served = served
        self.running = running
        self.pii_kinds = pii_kinds
        self.poll_seconds = poll_seconds
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self._lock = threading.Lock()
        self._kicks: queue.Queue[tuple[str, str]] = queue.Queue()
        self._active: set[tuple[str, str]] = set()
        self._rerun: set[tuple[str, str]] = set()
        self._stop = threading.Event()
        self._recovered = False

    @property
    def gateway_url(self) -> str:
        return self.running.url

    # ------------------------------------------------------------------ the loop

    def kick(self, tenant_id: str, deployment_id: str) -> None:
        self._kicks.put((tenant_id, deployment_id))

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        try:
            if not self._recovered:  # once per process; a failure raises, the supervisor retries (and says so)
                self._recover()
                self._recovered = True
            while not stop.is_set():
                try:
                    tenant_id, deployment_id = self._kicks.get(timeout=0.5)
                except queue.Empty:
                    continue
                self._start_rollout(tenant_id, deployment_id)
        finally:
            if stop.is_set():
                for endpoint in list(self.endpoints.values()):
                    for pool in list(endpoint.pools.values()):
                        pool.stop()

    def _start_rollout(self, tenant_id: str, deployment_id: str) -> None:
        key = (tenant_id, deployment_id)
        with self._lock:
            if key in self._active:
                self._rerun.add(key)  # e.g. approved while its request's rollout thread is still looking at it
                return
            self._active.add(key)

        def rollout() -> None:
            try:
                self._rollout(tenant_id, deployment_id)
            except Exception as exc:  # noqa: BLE001 - never quietly: the deployment fails with the reason
                log.exception("deployment %s failed unexpectedly", deployment_id)
                self._fail(tenant_id, deployment_id, "internal", f"the deploy service failed: {type(exc).__name__}")
            finally:
                with self._lock:
                    self._active.discard(key)
                    again = key in self._rerun
                    self._rerun.discard(key)
                if again:
                    self.kick(tenant_id, deployment_id)

        threading.Thread(target=rollout, name=f"rollout-{deployment_id}", daemon=True).start()

    # ------------------------------------------------------------------ records

    def _endpoint(self, tenant_id: str, name: str) -> Endpoint:
        with self._lock:
            return self.endpoints.setdefault((tenant_id, name), Endpoint(tenant_id, name))

    def _record(self, tenant_id: str, deployment_id: str,
                decide: Callable[[domain.DeploymentState], list[Any]]) -> domain.DeploymentState:
        return self.records.record(tenant_id, deployment_id, MANAGER_ACTOR, decide)

    def _step(self, tenant_id: str, deployment_id: str,
              decide: Callable[[domain.DeploymentState], list[Any]]) -> domain.DeploymentState:
        """Record a step of the rollout; Abandon when the deployment ended meanwhile (a person rolled it back)."""
        try:
            return self._record(tenant_id, deployment_id, decide)
        except domain.DeploymentRefused as exc:
            raise Abandon(str(exc)) from None

    def _fail(self, tenant_id: str, deployment_id: str, code: str, reason: str) -> None:
        try:
            self._record(tenant_id, deployment_id, lambda s: domain.failed(s, code, reason))
        except domain.DeploymentRefused:
            pass  # it ended otherwise meanwhile (rolled back by a person)

    def _still(self, tenant_id: str, deployment_id: str, *states: str) -> domain.DeploymentState:
        state = self.records.load(tenant_id, deployment_id)
        if state.state not in states:
            raise Abandon(f"the deployment is {state.state} now")
        return state

    # ------------------------------------------------------------------ one rollout

    def _rollout(self, tenant_id: str, deployment_id: str) -> None:
        state = self.records.load(tenant_id, deployment_id)
        if not state.exists:
            return
        endpoint = self._endpoint(tenant_id, state.request.endpoint_name)
        with endpoint.rollout:
            state = self.records.load(tenant_id, deployment_id)
            if state.state not in (domain.REQUESTED, domain.APPROVED) or \
                    (state.state == domain.REQUESTED and state.needs_approval):
                return
            bound = endpoint_environment(self.engine, tenant_id, endpoint.name)
            if bound and bound != state.request.environment:
                self._fail(tenant_id, deployment_id, "endpoint_environment",
                           f"endpoint {endpoint.name} serves environment {bound}; deploy to it with "
                           "that environment, or name another endpoint")
                return
            version = catalog.find_version(self.engine, tenant_id, state.request.model_version_id, 0)
            refusal = eval_gate_refusal(version) if version is not None else "the model version is unknown"
            if refusal:
                self._fail(tenant_id, deployment_id, "eval_gates", refusal)
                return
            assert version is not None
            slot = self._free_slot(endpoint, state.request.drain_seconds)
            try:
                pool = self.launcher.launch(tenant_id, version, pool=slot, endpoint=endpoint.name,
                                            deployment_id=deployment_id)
            except PoolFailed as exc:
                self._fail(tenant_id, deployment_id, exc.code, str(exc))
                return
            with endpoint.routing:
                endpoint.pools[slot] = pool
            try:
                self._step(tenant_id, deployment_id, lambda s: domain.pool_deployed(s, slot, endpoint.name, 1))
                self._bring_in(endpoint, state, pool)
            except Abandon as exc:
                log.info("deployment %s: %s; its pool is taken down", deployment_id, exc)
                self._settle(endpoint, deployment_id, pool, "", "")
            except StepFailed as exc:
                self._settle(endpoint, deployment_id, pool, exc.code, str(exc))
            except BaseException as exc:
                log.exception("deployment %s failed while rolling out", deployment_id)
                self._settle(endpoint, deployment_id, pool, "internal",
                             f"the deploy service failed while rolling out ({type(exc).__name__}); traffic is back "
                             "on the previous version")
                if not isinstance(exc, Exception):
                    raise

    def _settle(self, endpoint: Endpoint, deployment_id: str, pool: RunningPool, code: str, reason: str) -> None:
        """After a rollout stopped half-way: traffic back where it was, the outcome recorded (``code`` ""
        : it ended otherwise, nothing to record), the candidate's pool taken down unless it still answers."""
        moved_back = False
        with endpoint.routing:
            gateway = endpoint.gateway
            if gateway is not None:
                def undo(current: Routing) -> Routing | None:
                    nonlocal moved_back
                    if current.pools.get(pool.name) != _pool(pool):
                        return None
                    if current.active == pool.name and current.previous in current.pools:
                        moved_back = True
                        return flipped(current, current.previous, by=MANAGER_ACTOR,
                                       reason=f"deployment {deployment_id} failed")
                    if current.candidate == pool.name:
                        return _without_candidate(current, MANAGER_ACTOR, "the candidate failed")
                    return None

                _change_routing(gateway, undo)
            if code:
                for attempt in range(6):  # the store may be what failed: the outcome must still be recorded
                    try:
                        state = self.records.load(endpoint.tenant_id, deployment_id)
                        if moved_back or (domain.holds_traffic(state) and state.weight_percent < 100):
                            self._record(endpoint.tenant_id, deployment_id, lambda s: domain.rolled_back(
                                s, code, reason, automatic=True))
                        else:
                            self._record(endpoint.tenant_id, deployment_id, lambda s: domain.failed(s, code, reason))
                        break
                    except domain.DeploymentRefused:
                        break
                    except Exception:  # noqa: BLE001 - retried; the last failure is logged
                        if attempt == 5:
                            log.exception("deployment %s: its outcome (%s) could not be recorded", deployment_id,
                                          code)
                        self._stop.wait(min(8.0, 0.5 * 2 ** attempt))
        self._retire(endpoint, pool.name, pool)

    def _free_slot(self, endpoint: Endpoint, drain_seconds: float) -> str:
        """The slot not answering; the pool in it (the previous version) leaves routing, drains and stops."""
        with endpoint.routing:
            active = endpoint.gateway.table.current().active if endpoint.gateway is not None else ""
            slot = next(s for s in SLOTS if s != active)
            old = endpoint.pools.get(slot)
        if old is not None:
            self._retire(endpoint, slot, old, drain_seconds)
        return slot

    def _retire(self, endpoint: Endpoint, slot: str, pool: RunningPool, drain_seconds: float = 0.0) -> bool:
        """Take ``pool`` out of routing, let its requests finish (up to ``drain_seconds``) and stop it. A pool
        that answers the endpoint's traffic (its active pool) is never stopped: False."""
        with endpoint.routing:
            gateway = endpoint.gateway
            if gateway is not None:
                current = gateway.table.current()
                if current.pools.get(slot) == _pool(pool) and current.active == slot:
                    log.error("pool %s of endpoint %s still answers its traffic: not stopped", slot, endpoint.name)
                    return False

                def without(current: Routing) -> Routing | None:
                    if current.pools.get(slot) != _pool(pool) or current.active == slot:
                        return None
                    rest = _without_candidate(current, MANAGER_ACTOR, f"pool {slot} retired") \
                        if current.candidate == slot else current
                    return replace(rest, version=current.version + 1,
                                   pools={k: v for k, v in rest.pools.items() if k != slot},
                                   previous="" if rest.previous == slot else rest.previous, changed_by=MANAGER_ACTOR,
                                   reason=f"pool {slot} retired")

                _change_routing(gateway, without)
            if endpoint.pools.get(slot) is pool:
                del endpoint.pools[slot]
            endpoint.shadow.pop(slot, None)  # answers mirrored to it are never kept past its life
        started = time.monotonic()
        while gateway is not None and gateway.inflight.get(slot, 0) > 0 and \
                time.monotonic() - started < drain_seconds and not self._stop.is_set():
            self._stop.wait(0.05)
        pool.stop()
        return True

    def _bring_in(self, endpoint: Endpoint, state: domain.DeploymentState, pool: RunningPool) -> None:
        tenant_id, deployment_id, r = endpoint.tenant_id, state.deployment_id, state.request
        first = endpoint.gateway is None
        gateway = endpoint.gateway or self._new_gateway(endpoint, pool)
        try:
            self.running.call(gateway.check_pool(_pool(pool)), timeout=60)
        except PoolUnhealthy:
            raise StepFailed("pool_unhealthy", f"pool {pool.name} did not pass its health checks (the server does "
                                               "not answer or does not serve the model); no traffic moved") from None
        self._step(tenant_id, deployment_id, domain.pool_healthy)
        if first:  # nothing answered this endpoint before: the pool takes its traffic at once
            with endpoint.routing:
                self._still(tenant_id, deployment_id, domain.HEALTHY)
                endpoint.gateway = gateway
                self.front.endpoints[(tenant_id, endpoint.name)] = gateway
                self._step(tenant_id, deployment_id, lambda s: domain.traffic_flipped(
                    s, "", 100, routing_version=gateway.table.current().version))
                flip_at = time.monotonic()
            self._verify(endpoint, deployment_id, pool, flip_at)
            return
        if r.strategy == events_pb2.ROLLOUT_STRATEGY_SHADOW and not self._shadow(endpoint, state, pool):
            return
        if r.strategy == events_pb2.ROLLOUT_STRATEGY_CANARY and not self._canary(endpoint, state, pool):
            return
        self._flip(endpoint, state, pool)

    def _new_gateway(self, endpoint: Endpoint, pool: RunningPool) -> Gateway:
        tenant_id, name = endpoint.tenant_id, endpoint.name

        def on_access(record: Any) -> None:
            owner = endpoint.pools.get(record.pool)
            self.served.add(ServedRow(tenant_id, name, owner.deployment_id if owner is not None else "", record))

        def on_shadow(record: ShadowRecord) -> None:
            current = endpoint.gateway.table.current() if endpoint.gateway is not None else None
            if current is not None and current.strategy == "shadow" and current.candidate == record.pool:
                endpoint.shadow[record.pool].append(record)  # late answers after judging are dropped

        def on_rollback(rollback: AutomaticRollback) -> None:
            owner = endpoint.pools.get(rollback.from_pool)
            if owner is not None:  # recorded off the gateway's loop: the store is not async
                threading.Thread(target=self._auto_rolled_back, args=(endpoint, owner, rollback), daemon=True,
                                 name="auto-rollback").start()

        return Gateway(RoutingTable(Routing(1, {pool.name: _pool(pool)}, pool.name, changed_by=MANAGER_ACTOR,
                                            reason="the endpoint's first deployment")),
                       on_access=on_access, on_shadow=on_shadow, on_rollback=on_rollback)

    def _flip(self, endpoint: Endpoint, state: domain.DeploymentState, pool: RunningPool) -> None:
        r = state.request
        gateway = endpoint.gateway
        assert gateway is not None
        with endpoint.routing:  # a person's rollback waits for this lock: it sees the flip and its record together
            self._still(endpoint.tenant_id, state.deployment_id, domain.HEALTHY, domain.SHADOWING, domain.FLIPPED)
            current = gateway.table.current()
            previous = current.pools[current.active]
            if current.pools.get(pool.name) == _pool(pool):
                installed = current  # a canary's last step: its users stay on the candidate through the flip
            else:
                installed = gateway.table.replace(current.version, replace(
                    current, version=current.version + 1, pools={**current.pools, pool.name: _pool(pool)},
                    strategy="single", candidate="", canary_weight=0.0))
            gates = _limits(r.metric_gates) if r.rollback_on_regression else None
            try:
                result = self.running.call(gateway.flip(
                    pool.name, installed.version, drain_seconds=0, by=MANAGER_ACTOR,
                    reason=f"deployment {state.deployment_id}", gates=gates, watch_seconds=r.verify_seconds))
            except (PoolUnhealthy, StaleRouting) as exc:
                raise StepFailed("flip_refused", f"traffic was not moved: {_plain(exc)}") from None
            flip_at = time.monotonic()
            self._step(endpoint.tenant_id, state.deployment_id, lambda s: domain.traffic_flipped(
                s, previous.name, 100, previous_model_version_id=previous.model_version_id,
                routing_version=result.routing.version))
        self._verify(endpoint, state.deployment_id, pool, flip_at)

    def _verify(self, endpoint: Endpoint, deployment_id: str, pool: RunningPool, flip_at: float) -> None:
        """Watch the pool for ``verify_seconds`` from the flip (the gateway's watcher rolls back on a breach when
        asked to); then Verified, or Failed with the gates that broke (its traffic stays until rolled back)."""
        state = self.records.load(endpoint.tenant_id, deployment_id)
        r = state.request
        gateway = endpoint.gateway
        assert gateway is not None
        version = gateway.table.current().version
        while time.monotonic() - flip_at < r.verify_seconds and not self._stop.is_set():
            if gateway.table.current().version != version:
                return  # someone moved traffic (a rollback): whoever did recorded it
            try:
                if self.records.load(endpoint.tenant_id, deployment_id).state != domain.FLIPPED:
                    return
            except Exception:  # noqa: BLE001 - a store hiccup is no reason to undo a healthy deployment
                log.warning("deployment %s: reading its state failed; still verifying", deployment_id, exc_info=True)
            self._stop.wait(self.poll_seconds)
        with endpoint.routing:
            if self._stop.is_set() or gateway.table.current().version != version:
                return
            outcomes = _since(gateway, pool.name, flip_at)
            breaches = evaluate(outcomes, _limits(r.metric_gates))
            try:
                if breaches:  # no automatic rollback was made: it failed its gates, and answers until rolled back
                    reason = "; ".join(b.describe() for b in breaches) + " (no automatic rollback was made: roll " \
                                                                         "it back or deploy another version)"
                    self._record(endpoint.tenant_id, deployment_id, lambda s: domain.failed(s, "traffic_gates", reason))
                    return
                errors = sum(1 for ok, _ in outcomes if not ok) / len(outcomes) if outcomes else 0.0
                latency = p95([s for ok, s in outcomes if ok]) * 1000 if any(ok for ok, _ in outcomes) else 0.0
                self._record(endpoint.tenant_id, deployment_id,
                             lambda s: domain.verified(s, len(outcomes), errors, latency))
            except domain.DeploymentRefused:
                pass  # rolled back at the last moment

    def _canary(self, endpoint: Endpoint, state: domain.DeploymentState, pool: RunningPool) -> bool:
        """The steps below 100%; False when a gate broke (rolled back) or the deployment ended meanwhile."""
        r = state.request
        gateway = endpoint.gateway
        assert gateway is not None
        steps = [w for w in r.canary_steps_percent if w < 100]
        step_seconds = r.verify_seconds / max(1, len(r.canary_steps_percent))
        gates = _limits(r.metric_gates)
        for weight in steps:
            with endpoint.routing:
                self._still(endpoint.tenant_id, state.deployment_id, domain.HEALTHY, domain.FLIPPED)
                current = gateway.table.current()
                previous = current.pools[current.active]
                routing = replace(current, pools={**current.pools, pool.name: _pool(pool)}, strategy="canary",
                                  candidate=pool.name, canary_weight=weight / 100, salt=state.deployment_id,
                                  changed_by=MANAGER_ACTOR, reason=f"deployment {state.deployment_id}: {weight}%")
                try:
                    installed = self.running.call(gateway.set_routing(current.version, routing))
                except (PoolUnhealthy, StaleRouting) as exc:
                    raise StepFailed("flip_refused", f"the canary step to {weight}% was not made: {_plain(exc)}") \
                        from None
                step_at = time.monotonic()
                self._step(endpoint.tenant_id, state.deployment_id, lambda s, w=weight: domain.traffic_flipped(
                    s, previous.name, w, previous_model_version_id=previous.model_version_id,
                    routing_version=installed.version))
            while time.monotonic() - step_at < step_seconds and not self._stop.is_set():
                if gateway.table.current().version != installed.version:
                    return False  # a person rolled it back
                breaches = evaluate(_since(gateway, pool.name, step_at), gates)
                if breaches and r.rollback_on_regression:
                    self._undo_canary(endpoint, state.deployment_id, installed, breaches)
                    return False
                self._stop.wait(self.poll_seconds)
            if self._stop.is_set():
                return False
        return True

    def _undo_canary(self, endpoint: Endpoint, deployment_id: str, installed: Routing, breaches: list[Any]) -> None:
        gateway = endpoint.gateway
        assert gateway is not None
        reason = "automatic rollback: " + "; ".join(b.describe() for b in breaches)
        with endpoint.routing:
            try:
                gateway.table.replace(installed.version, _without_candidate(installed, MANAGER_ACTOR, reason))
            except StaleRouting:
                return
            try:
                self._record(endpoint.tenant_id, deployment_id, lambda s: domain.rolled_back(
                    s, ",".join(b.gate for b in breaches), reason, automatic=True))
            except domain.DeploymentRefused:
                pass  # a person rolled it back first: theirs is the record

    def _shadow(self, endpoint: Endpoint, state: domain.DeploymentState, pool: RunningPool) -> bool:
        """Mirror traffic to the candidate for ``verify_seconds``, then judge its answers. True: it passed."""
        r = state.request
        gateway = endpoint.gateway
        assert gateway is not None
        with endpoint.routing:
            self._still(endpoint.tenant_id, state.deployment_id, domain.HEALTHY)
            current = gateway.table.current()
            routing = replace(current, pools={**current.pools, pool.name: _pool(pool)}, strategy="shadow",
                              candidate=pool.name, changed_by=MANAGER_ACTOR,
                              reason=f"deployment {state.deployment_id}: shadow")
            endpoint.shadow[pool.name].clear()
            try:
                installed = self.running.call(gateway.set_routing(current.version, routing))
            except (PoolUnhealthy, StaleRouting) as exc:
                raise StepFailed("flip_refused", f"shadowing did not start: {_plain(exc)}") from None
            self._step(endpoint.tenant_id, state.deployment_id, domain.shadow_started)
        started = time.monotonic()
        while time.monotonic() - started < r.verify_seconds and not self._stop.is_set():
            if gateway.table.current().version != installed.version:
                return False  # rolled back by a person
            self._stop.wait(self.poll_seconds)
        if self._stop.is_set():
            return False
        records = list(endpoint.shadow[pool.name])
        endpoint.shadow[pool.name].clear()  # the answers are judged once, then dropped: only counts are kept
        answers = [ShadowAnswer(rec.status == 200, rec.seconds, rec.answer) for rec in records]
        version = catalog.find_version(self.engine, endpoint.tenant_id, r.model_version_id, 0)
        secrets = canary_secrets(self.launcher.storage_root, endpoint.tenant_id, version.dataset_uri) \
            if version is not None else []
        verdict = judge(answers, _shadow_limits(r.metric_gates), self.pii_kinds, secrets)
        with endpoint.routing:  # back to answering from the active pool only, whatever the verdict
            current = gateway.table.current()
            if current.version == installed.version:
                gateway.table.replace(current.version, _without_candidate(
                    current, MANAGER_ACTOR, f"deployment {state.deployment_id}: shadow judged"))
            self._step(endpoint.tenant_id, state.deployment_id, lambda s: domain.shadow_judged(s, verdict))
        if not verdict.passed:
            raise StepFailed("shadow_gates", verdict.reason)
        return True

    # ------------------------------------------------------------------ rollbacks

    def _auto_rolled_back(self, endpoint: Endpoint, pool: RunningPool, rollback: AutomaticRollback) -> None:
        trigger = ",".join(rollback.gates)
        with endpoint.routing:  # the flip's record is made under this lock: it is in the stream by now
            try:
                if rollback.done:
                    self._record(endpoint.tenant_id, pool.deployment_id,
                                 lambda s: domain.rolled_back(s, trigger, rollback.reason, automatic=True))
                else:  # it still answers: say so, a person must act
                    self._record(endpoint.tenant_id, pool.deployment_id,
                                 lambda s: domain.failed(s, "rollback_failed", rollback.reason))
            except domain.DeploymentRefused as exc:
                log.error("recording the automatic rollback of %s failed: %s", pool.deployment_id, exc)

    def rollback(self, caller: Caller, deployment_id: str, reason: str) -> domain.DeploymentState:
        """A person's rollback: traffic back to the version before this deployment, or, before any traffic moved,
        the deployment cancelled and its candidate taken down. Raises FailedPrecondition when it no longer
        answers (a later deployment replaced its pool) or the version before it is no longer up."""
        tenant_id = caller.tenant_id
        state = self.records.load(tenant_id, deployment_id)
        endpoint = self._endpoint(tenant_id, state.request.endpoint_name)
        reason = reason or "manual rollback"
        with endpoint.routing:
            state = self.records.load(tenant_id, deployment_id)  # again, under the lock every rollout step takes
            moved = domain.holds_traffic(state)
            if not moved and state.state not in domain.ROLLBACK_FROM:
                raise refusal_error(domain.DeploymentRefused(
                    "wrong_state", f"cannot roll back a deployment that is {state.state.replace('_', ' ')}"))
            gateway = endpoint.gateway
            current = gateway.table.current() if gateway is not None else None
            mine = endpoint.pools.get(state.pool) if state.pool else None
            if mine is not None and mine.deployment_id != deployment_id:
                mine = None
            superseded = FailedPrecondition(f"deployment {deployment_id} no longer has a pool (a later deployment "
                                            "replaced it); deploy the version you want instead",
                                            reason="DEPLOYMENT_SUPERSEDED")
            if moved:
                assert gateway is not None and current is not None
                answering = current.pools.get(current.active)
                canary = mine is not None and current.strategy == "canary" and current.candidate == mine.name
                if not canary and answering is not None and (mine is None or current.active != mine.name) and \
                        answering.model_version_id == state.previous_model_version_id:
                    pass  # traffic is back already (a rollback moved it and could not record it): record only
                elif mine is None:
                    raise superseded
                elif canary:
                    _change_routing(gateway, lambda c: _without_candidate(c, caller.actor, reason)
                                    if c.candidate == mine.name else None)
                elif current.active == mine.name and current.pools.get(current.previous) is not None and \
                        current.pools[current.previous].model_version_id == state.previous_model_version_id:
                    try:
                        self.running.call(gateway.rollback(current.version, drain_seconds=0, by=caller.actor,
                                                           reason=reason))
                    except (PoolUnhealthy, StaleRouting, TimeoutError) as exc:
                        raise FailedPrecondition(f"traffic was not moved back: {_plain(exc) or 'timed out'}; try "
                                                 "again", reason="ROLLBACK_NOT_MADE") from None
                else:
                    raise FailedPrecondition(
                        f"deployment {deployment_id} has nothing to roll back to: the endpoint answered no other "
                        "version before it, or that version's pool was replaced (or not restored after a restart); "
                        "deploy the version you want", reason="NOTHING_TO_ROLL_BACK_TO")
            else:
                if state.pool and mine is None:
                    raise superseded
                if gateway is not None and mine is not None:
                    _change_routing(gateway, lambda c: _without_candidate(c, caller.actor, reason)
                                    if c.candidate == mine.name else None)
            active = gateway.table.current() if gateway is not None else None
            serving = active.pools[active.active] if active is not None else None
            try:
                result = self.records.record(tenant_id, deployment_id, caller.actor, lambda s: domain.rolled_back(
                    s, "manual", reason, to_pool=serving.name if serving else "",
                    model_version_id=serving.model_version_id if serving else ""))
            except domain.DeploymentRefused as exc:
                raise refusal_error(exc) from None
        if not moved and mine is not None:
            self._retire(endpoint, mine.name, mine)
        return result

    # ------------------------------------------------------------------ restart

    def _recover(self) -> None:
        """Bring back what answered before a restart; settle rollouts the restart interrupted."""
        resume: dict[tuple[str, str], str] = {}   # (tenant, endpoint) -> the flipped deployment being verified
        for tenant_id, events in self._deployment_streams():
            s = domain.fold(events)
            if s.state in (domain.POOL_DEPLOYED, domain.HEALTHY, domain.SHADOWING):
                self._fail(tenant_id, s.deployment_id, "interrupted", "the deploy service restarted during the "
                                                                      "rollout; request the deployment again")
            elif s.state == domain.FLIPPED and s.weight_percent < 100:
                try:
                    self._record(tenant_id, s.deployment_id, lambda st: domain.rolled_back(
                        st, "restart", "the deploy service restarted during the canary; traffic is back on the "
                                       "previous version: request the deployment again", automatic=True))
                except domain.DeploymentRefused:
                    pass  # settled by another process's recovery, or a person, first
            elif s.state == domain.FLIPPED:
                resume[(tenant_id, s.request.endpoint_name)] = s.deployment_id
            elif s.state in (domain.REQUESTED, domain.APPROVED):
                self.kick(tenant_id, s.deployment_id)
        for (tenant_id, name), (version_id, deployment_id) in self._serving().items():
            restored = self._restore(tenant_id, name, version_id, deployment_id)
            flipped_id = resume.pop((tenant_id, name), "")
            if not flipped_id:
                continue
            if not restored or flipped_id != deployment_id:
                self._fail(tenant_id, flipped_id, "restore_failed", "the deploy service restarted while this "
                                                                     "deployment was verified and could not bring its "
                                                                     "pool back; see the service log")
                continue
            threading.Thread(target=self._resume_verify, args=(tenant_id, name, flipped_id), daemon=True,
                             name=f"verify-{flipped_id}").start()
        for (tenant_id, _), flipped_id in resume.items():  # flipped, yet not what the events say answers
            self._fail(tenant_id, flipped_id, "restore_failed", "the deploy service restarted while this deployment "
                                                                "was verified; it is not what the endpoint answers")

    def _resume_verify(self, tenant_id: str, name: str, deployment_id: str) -> None:
        """Verification of a deployment flipped before a restart, again from the start, as its endpoint's rollout
        (no other rollout of the endpoint runs meanwhile). Nothing to roll back to after a restart: a breach
        fails it, and it answers until a person deploys another version."""
        endpoint = self._endpoint(tenant_id, name)
        with endpoint.rollout:
            pool = endpoint.pools.get("blue")
            if pool is None or pool.deployment_id != deployment_id:
                return
            try:
                self._verify(endpoint, deployment_id, pool, time.monotonic())
            except Exception:  # noqa: BLE001 - never quietly
                log.exception("verifying %s after a restart failed", deployment_id)
                self._fail(tenant_id, deployment_id, "internal", "verifying it after a restart failed; see the "
                                                                  "service log")

    def _deployment_streams(self) -> list[tuple[str, list[events_pb2.EventEnvelope]]]:
        with self.engine.connect() as conn:
            streams = conn.execute(select(stored_events.c.tenant_id, stored_events.c.stream_id).where(
                stored_events.c.stream_type == domain.STREAM, stored_events.c.stream_version == 1)
                .order_by(stored_events.c.seq)).all()
            return [(row.tenant_id, eventstore.load_stream(conn, row.tenant_id, row.stream_id)) for row in streams]

    def _serving(self) -> dict[tuple[str, str], tuple[str, str]]:
        """Each endpoint's serving version and the deployment that brought it: the last full flip or rollback,
        in the event store's order."""
        from services.common import envelope as codec

        with self.engine.connect() as conn:
            rows = conn.execute(select(stored_events.c.tenant_id, stored_events.c.payload).where(
                stored_events.c.stream_type == domain.STREAM,
                stored_events.c.event_type.in_(("privtune.v1.TrafficFlipped", "privtune.v1.RolledBack")))
                .order_by(stored_events.c.seq)).all()
        serving: dict[tuple[str, str], tuple[str, str]] = {}
        owner: dict[tuple[str, str, str], str] = {}   # (tenant, endpoint, version) -> the deployment that flipped it
        for row in rows:
            env = codec.decode(row.payload)
            if env.WhichOneof("payload") == "traffic_flipped":
                e = env.traffic_flipped
                if e.weight_percent == 100 and e.model_version_id:
                    key = (row.tenant_id, e.endpoint_name)
                    serving[key] = (e.model_version_id, e.deployment_id)
                    owner[(*key, e.model_version_id)] = e.deployment_id
            else:
                r = env.rolled_back
                if not r.from_model_version_id:
                    continue  # a cancel: traffic never moved
                key = (row.tenant_id, r.endpoint_name)
                if r.model_version_id:
                    serving[key] = (r.model_version_id, owner.get((*key, r.model_version_id), ""))
                else:
                    serving.pop(key, None)
        return serving

    def _restore(self, tenant_id: str, name: str, version_id: str, deployment_id: str) -> bool:
        endpoint = self._endpoint(tenant_id, name)
        if endpoint.gateway is not None:
            return True
        version = catalog.find_version(self.engine, tenant_id, version_id, 10.0)
        if version is None:
            raise RuntimeError(f"endpoint {name}: version {version_id} is not in the deploy catalog yet")
        try:
            pool = self.launcher.launch(tenant_id, version, pool="blue", endpoint=name,
                                        deployment_id=deployment_id or "restored")
        except PoolFailed as exc:
            log.error("endpoint %s could not be restored with %s: %s", name, version_id, exc)
            return False
        gateway = self._new_gateway(endpoint, pool)
        with endpoint.routing:
            endpoint.pools["blue"] = pool
            endpoint.gateway = gateway
            self.front.endpoints[(tenant_id, name)] = gateway
        log.info("endpoint %s restored with %s", name, version_id)
        return True


def canary_secrets(storage_root: str, tenant_id: str, dataset_uri: str) -> list[str]:
    """The secrets of the canaries planted in the dataset version the model was trained on ([] when none)."""
    if not dataset_uri:
        return []
    storage = open_tenant_storage(storage_root, tenant_id)
    try:
        key = storage.key_for(dataset_uri).rstrip("/") + "/canaries.json"
        if not storage.exists(key):
            return []
        with storage.open(key) as fh:
            return [str(c["secret"]) for c in json.loads(fh.read())["canaries"] if c.get("secret")]
    except (PrivtuneError, OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("the canaries of %s could not be read (%s); shadow answers are checked for PII only",
                    dataset_uri[:200], type(exc).__name__)
        return []


def _since(gateway: Gateway, pool: str, started: float) -> list[tuple[bool, float]]:
    stats = gateway.stats.get(pool)
    return stats.since(started) if stats is not None else []

