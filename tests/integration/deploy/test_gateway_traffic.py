"""The gateway over two real serving processes (blue: the base model, green: the base + a trained LoRA adapter).

What a user or an operator would see, and what an attacker or a crash would try:
- 50 concurrent clients, half streaming, keep calling while traffic flips blue → green and rolls
  back green → blue: no request fails and no stream is cut (every stream ends with ``[DONE]``);
  every answer's ``x-privtune-model-version`` is the pool it came from, and its access record says
  the same;
- a flip to a pool that is down, or that does not serve its model, moves no traffic;
- a stale routing write (compare-and-set on the version) is refused, and the config is unchanged;
- canary assignment is sticky per user and its share matches the weight within a binomial bound;
- shadow answers are recorded and never reach the client;
- a candidate that starts failing (its server killed) or answers too slowly for the SLO is rolled
  back automatically, and the rollback names the gate and by how much it broke.
"""

from __future__ import annotations

import math
import threading
from dataclasses import replace
from typing import Iterator

from pathlib import Path

import httpx
import pytest

from services.deploy.backends import TransformersBackend
from services.deploy.gateway import (AccessRecord, AutomaticRollback, Gateway, PoolUnhealthy, RunningGateway,
                                     ShadowRecord)
from services.deploy.routing import Pool, Routing, RoutingTable, StaleRouting, bucket
from services.deploy.traffic_gates import TrafficGates
from tests.deploy_fixtures import trained_adapter

pytestmark = pytest.mark.integration
CLIENTS = 50


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    return trained_adapter(tmp_path_factory.mktemp("gateway"))


@pytest.fixture(scope="module")
def pools(trained: tuple[Path, Path, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pool]]:
    root = tmp_path_factory.mktemp("gateway-logs")
    base, adapter, sha256 = trained
    blue = TransformersBackend(base, "tiny-base", root / "blue.log", max_batch=16, threads=1)
    green = TransformersBackend(base, "tiny-base", root / "green.log", max_batch=16, threads=1)
    for server in (blue, green):
        server.start(timeout=300)
    green.load_adapter("desk-v1", adapter, sha256)
    yield {"blue": Pool("blue", (blue.base_url,), "tiny-base", "desk/v0"),
           "green": Pool("green", (green.base_url,), "desk-v1", "desk/v1")}
    for server in (blue, green):
        server.stop()


@pytest.fixture
def gateway(pools: dict[str, Pool]) -> Iterator[tuple[RunningGateway, list[AccessRecord], list[ShadowRecord],
                                                      list[AutomaticRollback]]]:
    access: list[AccessRecord] = []
    shadows: list[ShadowRecord] = []
    rollbacks: list[AutomaticRollback] = []
    table = RoutingTable(Routing(version=1, pools=pools, active="blue"))
    running = RunningGateway(Gateway(table, on_access=access.append, on_shadow=shadows.append,
                                     on_rollback=rollbacks.append)).start()
    yield running, access, shadows, rollbacks
    running.stop()


class Load:
    """``CLIENTS`` threads calling the gateway until stopped; every outcome kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.results: list[tuple[int, str, bool, bool, str]] = []  # status, model version, stream, complete, id
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def count(self) -> int:
        with self.lock:
            return len(self.results) + len(self.failures)

    def _client(self, n: int) -> None:
        with httpx.Client(timeout=120) as client:
            while not self.stop.is_set():
                stream = n % 2 == 0
                body = {"model": "support-bot", "messages": [{"role": "user", "content": f"card declined {n}"}],
                        "max_tokens": 6, "temperature": 0, "stream": stream, "user": f"user-{n}"}
                try:
                    if stream:
                        with client.stream("POST", self.url + "/v1/chat/completions", json=body) as response:
                            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
                            complete = bool(lines) and lines[-1] == "data: [DONE]"
                            outcome = (response.status_code, response.headers.get("x-privtune-model-version", ""),
                                       True, complete, response.headers.get("x-privtune-request-id", ""))
                    else:
                        response = client.post(self.url + "/v1/chat/completions", json=body)
                        complete = response.status_code == 200 and "choices" in response.json()
                        outcome = (response.status_code, response.headers.get("x-privtune-model-version", ""),
                                   False, complete, response.headers.get("x-privtune-request-id", ""))
                except httpx.HTTPError as exc:
                    with self.lock:
                        self.failures.append(type(exc).__name__)
                    continue
                with self.lock:
                    self.results.append(outcome)


def _wait_for(load: Load, more: int) -> None:
    target = load.count() + more
    deadline = threading.Event()
    for _ in range(6000):
        if load.count() >= target or load.failures:
            return
        deadline.wait(0.05)
    raise AssertionError(f"the load did not reach {target} requests")


def test_flip_and_rollback_under_load_fail_no_request_and_cut_no_stream(gateway: tuple, pools: dict) -> None:
    running, access, _, _ = gateway
    with Load(running.url) as load:
        _wait_for(load, 100)
        flip = running.call(running.gateway.flip("green", 1, drain_seconds=60, by="alice"))
        assert flip.routing.active == "green" and flip.routing.version == 2 and flip.drained
        assert flip.inflight_at_flip > 0  # requests were running on blue when traffic moved, and finished there
        _wait_for(load, 150)
        back = running.call(running.gateway.rollback(2, drain_seconds=60, by="alice", reason="manual rollback"))
        assert back.routing.active == "blue" and back.routing.version == 3 and back.drained
        assert back.inflight_at_flip > 0
        _wait_for(load, 100)
    assert load.failures == []
    assert all(status == 200 and complete for status, _, _, complete, _ in load.results), \
        [r for r in load.results if r[0] != 200 or not r[3]][:5]
    versions = [version for _, version, _, _, _ in load.results]
    assert versions.count("desk/v1") > 0 and versions.count("desk/v0") > 0
    assert sum(1 for r in load.results if r[2]) > 0 and sum(1 for r in load.results if not r[2]) > 0
    by_id = {record.request_id: record for record in access}
    for _, version, _, _, request_id in load.results:  # the access record names the version the client saw
        assert by_id[request_id].model_version_id == version and by_id[request_id].status == 200
    after_rollback = [r for r in access if r.routing_version == 3]
    assert after_rollback and {r.model_version_id for r in after_rollback} == {"desk/v0"}


def test_no_traffic_moves_to_a_pool_that_is_down_or_lacks_its_model(gateway: tuple, pools: dict) -> None:
    running, _, _, _ = gateway
    table = running.gateway.table
    dead = Pool("dead", ("http://127.0.0.1:9",), "tiny-base", "desk/v9")
    wrong = replace(pools["green"], name="wrong", model="not-loaded")
    table.replace(1, replace(table.current(), version=2, pools={**pools, "dead": dead, "wrong": wrong}))
    for name in ("dead", "wrong"):
        with pytest.raises(PoolUnhealthy):
            running.call(running.gateway.flip(name, 2))
    assert table.current().version == 2 and table.current().active == "blue"


def test_a_stale_routing_write_is_refused(gateway: tuple) -> None:
    running, _, _, _ = gateway
    first = running.call(running.gateway.flip("green", 1))
    with pytest.raises(StaleRouting):  # a second operator read version 1 too
        running.call(running.gateway.flip("blue", 1))
    assert running.gateway.table.current() == first.routing


def test_canary_is_sticky_per_user_and_matches_its_weight(gateway: tuple, pools: dict) -> None:
    running, _, _, _ = gateway
    weight = 0.3
    running.call(running.gateway.set_routing(1, Routing(version=0, pools=pools, active="blue", strategy="canary",
                                                        candidate="green", canary_weight=weight)))
    users = [f"user-{n}" for n in range(2000)]
    share = sum(bucket(u) < weight for u in users) / len(users)
    bound = 4 * math.sqrt(weight * (1 - weight) / len(users))  # 4 standard deviations of a binomial share
    assert abs(share - weight) < bound
    with httpx.Client(timeout=60) as client:
        for user in users[:20]:
            seen = set()
            for _ in range(3):
                response = client.post(running.url + "/v1/chat/completions", json={
                    "model": "support-bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                    "temperature": 0, "user": user})
                assert response.status_code == 200
                seen.add(response.headers["x-privtune-model-version"])
            assert seen == {"desk/v1" if bucket(user) < weight else "desk/v0"}


def test_shadow_answers_are_recorded_and_never_returned(gateway: tuple, pools: dict) -> None:
    running, _, shadows, _ = gateway
    running.call(running.gateway.set_routing(1, Routing(version=0, pools=pools, active="blue", strategy="shadow",
                                                        candidate="green")))
    body = {"model": "support-bot", "messages": [{"role": "user", "content": "card declined 7"}], "max_tokens": 8,
            "temperature": 0}
    blue_alone = httpx.post(pools["blue"].urls[0] + "/v1/chat/completions", json={**body, "model": "tiny-base"},
                            timeout=60).json()["choices"][0]["message"]["content"]
    green_alone = httpx.post(pools["green"].urls[0] + "/v1/chat/completions", json={**body, "model": "desk-v1"},
                             timeout=60).json()["choices"][0]["message"]["content"]
    assert blue_alone != green_alone
    ids = []
    for _ in range(5):
        response = httpx.post(running.url + "/v1/chat/completions", json=body, timeout=60)
        assert response.status_code == 200 and response.headers["x-privtune-model-version"] == "desk/v0"
        assert response.json()["choices"][0]["message"]["content"] == blue_alone
        ids.append(response.headers["x-privtune-request-id"])
    for _ in range(600):
        if len({s.request_id for s in shadows} & set(ids)) == len(ids):
            break
        threading.Event().wait(0.05)
    recorded = [s for s in shadows if s.request_id in ids]
    assert len(recorded) == 5 and all(s.status == 200 and s.model_version_id == "desk/v1" for s in recorded)
    assert {s.answer for s in recorded} == {green_alone}


def _ask(url: str, n: int) -> int:
    try:
        return httpx.post(url + "/v1/chat/completions", timeout=60, json={
            "model": "support-bot", "messages": [{"role": "user", "content": f"card declined {n}"}], "max_tokens": 3,
            "temperature": 0}).status_code
    except httpx.HTTPError:
        return 0


def _until_rolled_back(running: RunningGateway, rollbacks: list[AutomaticRollback]) -> list[int]:
    statuses = []
    for n in range(2000):
        if rollbacks:
            break
        statuses.append(_ask(running.url, n))
    assert rollbacks, "no automatic rollback"
    return statuses


def test_a_candidate_whose_server_dies_is_rolled_back_naming_the_gate(gateway: tuple, trained: tuple,
                                                                       tmp_path: Path) -> None:
    running, _, _, rollbacks = gateway
    fragile = TransformersBackend(trained[0], "tiny-base", tmp_path / "fragile.log", threads=1)
    fragile.start(timeout=300)
    table = running.gateway.table
    try:
        pool = Pool("fragile", (fragile.base_url,), "tiny-base", "desk/v2")
        table.replace(1, replace(table.current(), version=2, pools={**table.current().pools, "fragile": pool}))
        running.call(running.gateway.flip("fragile", 2, gates=TrafficGates(max_error_rate=0.05, min_requests=10)))
        assert _ask(running.url, 0) == 200
    finally:
        fragile.stop()  # the candidate's server dies under traffic
    statuses = _until_rolled_back(running, rollbacks)
    assert 502 in statuses
    record = rollbacks[0]
    assert (record.from_pool, record.to_pool, record.gates, record.done) == ("fragile", "blue", ("error_rate",), True)
    assert "error rate" in record.reason and "exceeds the gate's 5.0% by" in record.reason
    assert table.current().active == "blue" and "automatic rollback" in table.current().reason
    assert _ask(running.url, 1) == 200


def test_a_candidate_slower_than_the_slo_is_rolled_back(gateway: tuple) -> None:
    running, _, _, rollbacks = gateway
    slo = TrafficGates(max_error_rate=1.0, p95_latency_seconds=0.001, min_requests=10)  # no real answer is that fast
    running.call(running.gateway.flip("green", 1, gates=slo))
    _until_rolled_back(running, rollbacks)
    record = rollbacks[0]
    assert (record.from_pool, record.to_pool, record.gates, record.done) == ("green", "blue", ("p95_latency",), True)
    assert "p95 latency" in record.reason and "exceeds the SLO's 1 ms by" in record.reason
    assert running.gateway.table.current().active == "blue"


def test_invalid_requests_and_engine_errors_reach_the_client_in_the_gateways_words(gateway: tuple,
                                                                                  pools: dict) -> None:
    """The gateway checks requests itself (engines differ: vLLM accepts any role), and an engine's own error
    messages, which can repeat input, list every served model or name server paths (vLLM's do), reach the
    client as the status and the parameter in the gateway's words."""
    running, _, _, _ = gateway
    secret = "SECRET-PROMPT-7731"
    for body, param in (({"messages": [{"role": "wizard", "content": secret}]}, "messages.0.role"),
                        ({"messages": [{"role": "user", "content": secret}], "max_tokens": 0}, "max_tokens"),
                        ({"messages": [{"role": "user", "content": secret}], "temperature": -1}, "temperature")):
        response = httpx.post(running.url + "/v1/chat/completions", json={"model": "support-bot", **body}, timeout=30)
        assert response.status_code == 400 and response.json()["error"]["param"] == param
        assert secret not in response.text
    # an engine refusal the gateway cannot foresee: the pool's model is not loaded there any more
    table = running.gateway.table
    gone = replace(pools["green"], name="gone", model="unloaded-adapter")
    table.replace(1, replace(table.current(), version=2, active="gone", pools={**pools, "gone": gone}))
    response = httpx.post(running.url + "/v1/chat/completions", timeout=30, json={
        "model": "support-bot", "messages": [{"role": "user", "content": secret}], "max_tokens": 2})
    assert response.status_code == 404 and response.json()["error"]["code"] == "upstream_404"
    assert "unloaded-adapter" not in response.text and secret not in response.text
    assert response.headers["x-privtune-model-version"] == "desk/v1"
    garbage = httpx.post(running.url + "/v1/chat/completions", content=b"\xff not json", timeout=30)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "invalid_json"


def test_hostile_bodies_and_hang_ups_neither_leak_in_flight_counts_nor_count_against_the_pool(gateway: tuple) -> None:
    """A body the gateway cannot forward, a string where a boolean goes, and clients that hang up mid-stream:
    afterwards nothing is counted in flight (a flip drains at once) and no failure is held against the pool."""
    import socket

    running, access, _, _ = gateway
    url = running.url + "/v1/chat/completions"
    base = '{"model": "support-bot", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2'
    for tail in (', "top_p": NaN}', ', "temperature": NaN}', ', "stream": "false"}', ', "n": 5}'):
        response = httpx.post(url, content=(base + tail).encode(), timeout=30,
                              headers={"content-type": "application/json"})
        assert response.status_code in (200, 400), (tail, response.status_code)
    for _ in range(5):  # read the status line of a stream, then hang up
        with socket.create_connection((running.host, running.port), timeout=30) as raw:
            body = (base + ', "stream": true, "max_tokens": 200}').encode()
            raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            assert raw.recv(64).startswith(b"HTTP/1.1 200")
    for _ in range(600):
        if running.gateway.inflight.get("blue", 0) == 0:
            break
        threading.Event().wait(0.05)
    assert running.gateway.inflight.get("blue", 0) == 0
    outcomes = running.gateway.stats["blue"].since(0)
    assert outcomes and all(ok for ok, _ in outcomes)
    assert {r.status for r in access} <= {200, 499}
    flip = running.call(running.gateway.flip("green", 1, drain_seconds=30))
    assert flip.drained and flip.inflight_at_flip == 0
