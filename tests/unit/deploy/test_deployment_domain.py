"""The deployment aggregate's rules: the lifecycle in order, the approver rule, and every out-of-order command."""

from __future__ import annotations

import pytest

from privtune.v1 import events_pb2
from services.common.envelope import Causation, new_envelope
from services.deploy import deployment_domain as d

pytestmark = pytest.mark.unit


def _request(environment: str = "production", **extra: object) -> events_pb2.DeploymentRequested:
    return events_pb2.DeploymentRequested(deployment_id="dep-1", model_version_id="bot/v2", environment=environment,
                                          strategy=events_pb2.ROLLOUT_STRATEGY_BLUE_GREEN, requested_by="alice",
                                          drain_seconds=30, rollback_on_regression=True, **extra)


class Stream:
    def __init__(self) -> None:
        self.events: list[events_pb2.EventEnvelope] = []

    def state(self) -> d.DeploymentState:
        return d.fold(self.events)

    def add(self, payloads: list) -> d.DeploymentState:
        for payload in payloads:
            env = new_envelope(payload, subject="dep-1", tenant_id="acme", source="test",
                               causation=Causation(actor="x", correlation_id="c"))
            env.aggregate_version = len(self.events) + 1
            self.events.append(env)
        return self.state()


def test_a_production_deployment_runs_its_lifecycle_in_order() -> None:
    s = Stream()
    assert s.add(d.request(s.state(), _request())).state == d.REQUESTED
    with pytest.raises(d.DeploymentRefused) as refused:
        d.pool_deployed(s.state(), "green", "http://green", 1)
    assert refused.value.code == "approval_required"
    assert s.add(d.approve(s.state(), "bob", ["approver"], ["win_rate_vs_base_min"])).approver == "bob"
    assert s.add(d.pool_deployed(s.state(), "green", "http://green", 2)).pool == "green"
    assert s.add(d.pool_healthy(s.state())).state == d.HEALTHY
    flipped = s.add(d.traffic_flipped(s.state(), "blue"))
    assert (flipped.state, flipped.previous_pool) == (d.FLIPPED, "blue")
    done = s.add(d.verified(s.state(), 120, 0.0, 45.0))
    assert done.state == d.VERIFIED and done.version == 6
    back = s.add(d.rolled_back(done, "manual", "customer complaints"))  # a verified deployment can still go back
    assert back.state == d.ROLLED_BACK and back.rolled_back.to_pool == "blue"


def test_the_approver_rule() -> None:
    s = Stream()
    s.add(d.request(s.state(), _request()))
    for approver, roles, why in (("alice", ["approver"], "requester"), ("carol", ["developer"], "role")):
        with pytest.raises(d.DeploymentRefused) as refused:
            d.approve(s.state(), approver, roles)
        assert refused.value.code == "permission_denied" and why in str(refused.value)
    s.add(d.approve(s.state(), "bob", ["approver"]))
    with pytest.raises(d.DeploymentRefused) as twice:
        d.approve(s.state(), "dave", ["approver"])
    assert twice.value.code == "wrong_state"


def test_staging_needs_no_approver_and_shadow_only_for_shadow_deployments() -> None:
    s = Stream()
    s.add(d.request(s.state(), _request("staging")))
    s.add(d.pool_deployed(s.state(), "green", "http://green", 1))
    s.add(d.pool_healthy(s.state()))
    with pytest.raises(d.DeploymentRefused, match="shadow"):
        d.shadow_started(s.state())
    shadow = Stream()
    request = _request("staging")
    request.strategy = events_pb2.ROLLOUT_STRATEGY_SHADOW
    shadow.add(d.request(shadow.state(), request))
    shadow.add(d.pool_deployed(shadow.state(), "green", "http://green", 1))
    shadow.add(d.pool_healthy(shadow.state()))
    assert shadow.add(d.shadow_started(shadow.state())).state == d.SHADOWING
    with pytest.raises(d.DeploymentRefused) as unjudged:  # no traffic before the shadow answers passed
        d.traffic_flipped(shadow.state(), "blue")
    assert unjudged.value.code == "shadow_gates"
    shadow.add(d.shadow_judged(shadow.state(), events_pb2.ShadowJudged(requests=20, passed=False)))
    with pytest.raises(d.DeploymentRefused):
        d.traffic_flipped(shadow.state(), "blue")
    shadow.add(d.shadow_judged(shadow.state(), events_pb2.ShadowJudged(requests=40, passed=True)))
    flipped = shadow.add(d.traffic_flipped(shadow.state(), "blue", previous_model_version_id="bot/v1"))
    assert flipped.state == d.FLIPPED and flipped.previous_model_version_id == "bot/v1"
    back = d.rolled_back(flipped, "p95_latency", "slow", automatic=True)[0]
    assert (back.to_pool, back.model_version_id, back.from_model_version_id, back.automatic) == \
        ("blue", "bot/v1", "bot/v2", True)


def test_canary_steps_rise_and_a_rollback_returns_to_the_first_steps_origin() -> None:
    s = Stream()
    request = _request("staging", canary_steps_percent=[10, 50, 100])
    request.strategy = events_pb2.ROLLOUT_STRATEGY_CANARY
    s.add(d.request(s.state(), request))
    s.add(d.pool_deployed(s.state(), "green", "http://green", 1))
    s.add(d.pool_healthy(s.state()))
    s.add(d.traffic_flipped(s.state(), "blue", 10, previous_model_version_id="bot/v1"))
    with pytest.raises(d.DeploymentRefused):
        d.traffic_flipped(s.state(), "blue", 10)  # never down or sideways
    state = s.add(d.traffic_flipped(s.state(), "green", 50, previous_model_version_id="bot/v1"))
    assert (state.weight_percent, state.previous_pool, state.previous_model_version_id) == (50, "blue", "bot/v1")
    back = d.rolled_back(state, "manual", "")[0]
    assert (back.to_pool, back.model_version_id) == ("blue", "bot/v1")


def test_out_of_order_and_terminal_commands_are_refused() -> None:
    s = Stream()
    with pytest.raises(d.DeploymentRefused) as missing:
        d.approve(s.state(), "bob", ["approver"])
    assert missing.value.code == "not_found"
    s.add(d.request(s.state(), _request("staging")))
    with pytest.raises(d.DeploymentRefused):
        d.request(s.state(), _request("staging"))  # the same id twice
    for command in (lambda st: d.pool_healthy(st), lambda st: d.traffic_flipped(st, "blue"),
                    lambda st: d.verified(st, 1, 0, 1)):
        with pytest.raises(d.DeploymentRefused) as refused:
            command(s.state())
        assert refused.value.code == "wrong_state"
    s.add(d.failed(s.state(), "pool_unhealthy", "green never became healthy"))
    with pytest.raises(d.DeploymentRefused):
        d.failed(s.state(), "again", "")


@pytest.mark.parametrize("change, message", [
    ({"model_version_id": ""}, "model_version_id"),
    ({"environment": ""}, "environment"),
    ({"requested_by": ""}, "requester"),
    ({"drain_seconds": 10_000}, "drain_seconds"),
])
def test_invalid_requests_say_what_to_fix(change: dict, message: str) -> None:
    request = _request()
    for key, value in change.items():
        setattr(request, key, value)
    with pytest.raises(d.DeploymentRefused, match=message):
        d.request(d.DeploymentState(), request)


def test_gates_and_canary_steps_are_checked() -> None:
    bad_rate = _request(metric_gates=events_pb2.TrafficGateLimits(max_error_rate=1.5))
    with pytest.raises(d.DeploymentRefused, match="max_error_rate"):
        d.request(d.DeploymentState(), bad_rate)
    bad_latency = _request(metric_gates=events_pb2.TrafficGateLimits(p95_latency_ms=float("nan")))
    with pytest.raises(d.DeploymentRefused, match="p95_latency_ms"):
        d.request(d.DeploymentState(), bad_latency)
    for steps in ([], [50, 10], [0, 50], [10, 200]):
        canary = _request(canary_steps_percent=steps)
        canary.strategy = events_pb2.ROLLOUT_STRATEGY_CANARY
        with pytest.raises(d.DeploymentRefused, match="canary_steps_percent"):
            d.request(d.DeploymentState(), canary)
    good = _request(canary_steps_percent=[5, 25, 100])
    good.strategy = events_pb2.ROLLOUT_STRATEGY_CANARY
    assert d.request(d.DeploymentState(), good) == [good]


def test_a_failed_deployment_that_holds_traffic_can_still_be_rolled_back_and_a_cancel_moves_no_alias() -> None:
    s = Stream()
    s.add(d.request(s.state(), _request("staging")))
    s.add(d.pool_deployed(s.state(), "green", "bot", 1))
    s.add(d.pool_healthy(s.state()))
    s.add(d.traffic_flipped(s.state(), "blue", 100, previous_model_version_id="bot/v1"))
    failed = s.add(d.failed(s.state(), "traffic_gates", "p95 latency above the SLO"))
    assert failed.state == d.FAILED and d.holds_traffic(failed)  # it still answers: a person must act
    back = d.rolled_back(failed, "manual", "")[0]
    assert (back.model_version_id, back.from_model_version_id) == ("bot/v1", "bot/v2")
    cancelled = Stream()
    cancelled.add(d.request(cancelled.state(), _request()))
    cancel = d.rolled_back(cancelled.state(), "manual", "not today", to_pool="blue", model_version_id="bot/v1")[0]
    assert cancel.from_model_version_id == ""  # no traffic moved: the registry's aliases stay


@pytest.mark.parametrize("gates", [events_pb2.TrafficGateLimits(min_requests=0),
                                   events_pb2.TrafficGateLimits(max_toxic_rate=1.5),
                                   events_pb2.TrafficGateLimits(max_error_rate=-0.1)])
def test_gate_limits_out_of_range_are_refused_up_front(gates: events_pb2.TrafficGateLimits) -> None:
    with pytest.raises(d.DeploymentRefused) as refused:
        d.request(d.DeploymentState(), _request("staging", metric_gates=gates))
    assert refused.value.code == "invalid_argument"
