"""Routing configs and traffic gates: pure rules, including the writes an operator race would make."""

from __future__ import annotations

import threading

import pytest

from services.deploy.routing import Pool, Routing, RoutingError, RoutingTable, StaleRouting, bucket, flipped, route
from services.deploy.traffic_gates import TrafficGates, evaluate, p95

pytestmark = pytest.mark.unit
POOLS = {"blue": Pool("blue", ("http://127.0.0.1:1",), "base", "m/v1"),
         "green": Pool("green", ("http://127.0.0.1:2",), "tuned", "m/v2")}


def test_single_canary_and_shadow_routes() -> None:
    single = Routing(1, POOLS, "blue")
    assert route(single, "u") == (POOLS["blue"], None)
    shadow = Routing(1, POOLS, "blue", strategy="shadow", candidate="green")
    assert route(shadow, "u") == (POOLS["blue"], POOLS["green"])
    canary = Routing(1, POOLS, "blue", strategy="canary", candidate="green", canary_weight=0.5)
    for user in (f"user-{n}" for n in range(200)):
        expected = POOLS["green"] if bucket(user) < 0.5 else POOLS["blue"]
        assert route(canary, user) == (expected, None) == route(canary, user)  # sticky


def test_a_growing_canary_keeps_its_users() -> None:
    users = [f"user-{n}" for n in range(1000)]
    small = {u for u in users if bucket(u) < 0.1}
    large = {u for u in users if bucket(u) < 0.5}
    assert small <= large and 50 < len(small) < 150


def test_invalid_configs_name_the_problem() -> None:
    with pytest.raises(RoutingError, match="active pool"):
        Routing(1, POOLS, "red").check()
    with pytest.raises(RoutingError, match="candidate"):
        Routing(1, POOLS, "blue", strategy="canary", candidate="blue").check()
    with pytest.raises(RoutingError, match="canary_weight"):
        Routing(1, POOLS, "blue", strategy="canary", candidate="green", canary_weight=1.5).check()
    with pytest.raises(RoutingError, match="strategy"):
        Routing(1, POOLS, "blue", strategy="everything").check()  # type: ignore[arg-type]


def test_flip_and_rollback_remember_the_previous_pool() -> None:
    table = RoutingTable(Routing(1, POOLS, "blue"))
    to_green = table.replace(1, flipped(table.current(), "green", by="alice"))
    assert (to_green.version, to_green.active, to_green.previous) == (2, "green", "blue")
    back = table.replace(2, flipped(to_green, to_green.previous, reason="rollback"))
    assert (back.version, back.active, back.previous) == (3, "blue", "green")


def test_only_one_of_racing_writers_wins_and_the_loser_is_told() -> None:
    table = RoutingTable(Routing(1, POOLS, "blue"))
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def write(to: str) -> None:
        barrier.wait()
        try:
            table.replace(1, flipped(Routing(1, POOLS, "blue"), to))
            outcomes.append("won")
        except StaleRouting as exc:
            assert exc.current == 2
            outcomes.append("stale")

    threads = [threading.Thread(target=write, args=("green" if n % 2 else "blue",)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["stale"] * 7 + ["won"] and table.current().version == 2
    with pytest.raises(RoutingError, match="version 3"):
        table.replace(2, Routing(7, POOLS, "blue"))  # a write must be exactly the next version


def test_gates_wait_for_enough_requests_then_say_which_broke_and_by_how_much() -> None:
    gates = TrafficGates(max_error_rate=0.1, p95_latency_seconds=0.5, min_requests=10)
    assert evaluate([(False, 1.0)] * 9, gates) == []  # too few to judge
    fine = [(True, 0.1)] * 19 + [(False, 0.1)]
    assert evaluate(fine, gates) == []
    failing = [(True, 0.1)] * 7 + [(False, 0.1)] * 3
    [breach] = evaluate(failing, gates)
    assert breach.gate == "error_rate" and breach.observed == pytest.approx(0.3)
    assert "30.0%" in breach.describe() and "by 20.0%" in breach.describe()
    slow = [(True, 0.1)] * 18 + [(True, 2.0)] * 2
    [late] = evaluate(slow, gates)
    assert late.gate == "p95_latency" and late.observed == 2.0 and "by 1500 ms" in late.describe()
    assert p95([float(n) for n in range(1, 101)]) == 95.0
    with pytest.raises(ValueError):
        TrafficGates(max_error_rate=2).check()
