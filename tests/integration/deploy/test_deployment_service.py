"""DeploymentService end to end on the embedded platform: real adapters trained on the tiny model, real
serving processes, the TLS gateway with bearer tokens, the registry's aliases following flips and
rollbacks, and the refusals an attacker or a mistake would run into."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Iterator

import grpc
import httpx
import pytest

from privtune.platform import Platform
from privtune.v1 import audit_service_pb2 as audit_pb
from privtune.v1 import audit_service_pb2_grpc as audit_grpc
from privtune.v1 import deployment_service_pb2 as pb
from privtune.v1 import deployment_service_pb2_grpc as pb_grpc
from privtune.v1 import events_pb2
from privtune.v1 import registry_service_pb2 as reg
from privtune.v1 import registry_service_pb2_grpc as reg_grpc
from services.common import eventstore
from services.common.auth.pki import ensure_local_pki
from tests.deploy_fixtures import record_evaluation, register_adapter
from tests.platform_fixtures import channel, metadata, start_platform, token, wait_until
from tests.training_fixtures import TENANT

pytestmark = pytest.mark.integration

ENGINEER = ("ml-engineer",)
APPROVER = ("approver",)
S = pb.DeploymentState


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("deploy-service")
    platform = start_platform(root / "data")
    try:
        versions = {v: register_adapter(platform, root, "bot", v, seed=v) for v in (1, 2)}
        world = {"platform": platform, "root": root, "versions": versions}
        yield world
    finally:
        for open_channel in _CHANNELS.values():
            open_channel.close()
        _CHANNELS.clear()
        world["platform"].stop() if "world" in locals() else platform.stop()


_CHANNELS: dict[int, grpc.Channel] = {}


def _channel(platform: Platform) -> grpc.Channel:
    """One channel per platform for the whole module (a channel per call would open a TLS connection each)."""
    if id(platform) not in _CHANNELS:
        _CHANNELS[id(platform)] = channel(platform)
    return _CHANNELS[id(platform)]


def _stub(platform: Platform) -> pb_grpc.DeploymentServiceStub:
    return pb_grpc.DeploymentServiceStub(_channel(platform))


def _md(actor: str = "alice", roles: tuple[str, ...] = ENGINEER, tenant: str = TENANT) -> list[tuple[str, str]]:
    return metadata(tenant, actor, roles)


def _wait_state(platform: Platform, deployment_id: str, *states: int, timeout: float = 180) -> pb.Deployment:
    stub = _stub(platform)
    found: list[pb.Deployment] = []

    def reached() -> bool:
        found[:] = [stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=deployment_id),
                                       metadata=_md()).deployment]
        return found[0].state in states

    wait_until(reached, timeout, f"deployment {deployment_id} in {states}")
    return found[0]


def _client(platform: Platform, actor: str = "alice", tenant: str = TENANT) -> httpx.Client:
    ca = str(ensure_local_pki(platform.config.pki_dir).ca.cert)
    return httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=60, headers={"authorization": f"Bearer {token(tenant, actor, ENGINEER)}"})


def _chat(client: httpx.Client, url: str, model: str = "bot-staging", stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "my invoice is wrong"}], "max_tokens": 6,
            "temperature": 0, "stream": stream}
    return client.post(url + "/v1/chat/completions", json=body)


def _deploy(platform: Platform, version: str, actor: str = "alice", roles: tuple[str, ...] = ENGINEER,
            **fields: object) -> pb.Deployment:
    request = pb.CreateDeploymentRequest(model_version_id=version, environment=fields.pop("environment", "staging"),
                                         verify_seconds=fields.pop("verify_seconds", 1), **fields)  # type: ignore[arg-type]
    return _stub(platform).CreateDeployment(request, metadata=_md(actor, roles)).deployment


def _alias(platform: Platform, ref: str) -> str:
    stub = reg_grpc.ModelRegistryServiceStub(_channel(platform))
    try:
        return stub.GetModelVersion(reg.GetModelVersionRequest(model_version_id=ref),
                                    metadata=_md()).model_version.model_version_id
    except grpc.RpcError:
        return ""


def test_first_deployment_serves_and_every_answer_names_its_model_version(world: dict) -> None:
    platform = world["platform"]
    first = _deploy(platform, world["versions"][1])
    assert first.state == S.DEPLOYMENT_STATE_REQUESTED and first.gateway_url.startswith("https://")
    done = _wait_state(platform, first.deployment_id, S.DEPLOYMENT_STATE_VERIFIED, S.DEPLOYMENT_STATE_FAILED)
    assert done.state == S.DEPLOYMENT_STATE_VERIFIED, done.reason
    with _client(platform) as client:
        answer = _chat(client, first.gateway_url)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-privtune-model-version"] == "bot/v1"
        streamed = _chat(client, first.gateway_url, stream=True)
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
        models = client.get(first.gateway_url + "/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["bot-staging"]  # the default name of a staging endpoint
    served = _stub(platform).GetServedRequest(pb.GetServedRequestRequest(
        request_id=answer.headers["x-privtune-request-id"]), metadata=_md()).request
    assert (served.model_version_id, served.deployment_id, served.principal, served.status) == \
        ("bot/v1", first.deployment_id, "alice", 200)
    wait_until(lambda: _alias(platform, "bot@staging") == "bot/v1", 30, "the staging alias on bot/v1")


def test_the_cli_reads_deployments_and_chats_through_the_gateway(world: dict,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from privtune.cli import main as cli_main

    platform = world["platform"]
    base = ["deploy", "--target", platform.grpc_target, "--tenant", TENANT, "--actor", "alice"]
    assert cli_main([*base, "list", "--endpoint", "bot-staging"]) == 0
    listed = json.loads(capsys.readouterr().out)["deployments"]
    assert [d["model_version_id"] for d in listed] == ["bot/v1"]
    assert cli_main([*base, "chat", "bot-staging", "my invoice is wrong", "--max-tokens", "4"]) == 0
    answered = json.loads(capsys.readouterr().out)
    assert answered["x-privtune-model-version"] == "bot/v1" and "answer" in answered
    assert cli_main([*base, "served", answered["x-privtune-request-id"]]) == 0
    assert json.loads(capsys.readouterr().out)["principal"] == "alice"
    assert cli_main([*base, "approve", listed[0]["deployment_id"]]) == 1  # a staging deployment needs none
    assert "cannot approve a deployment that is verified" in capsys.readouterr().err


def test_the_gateway_refuses_strangers_and_hides_other_tenants_endpoints(world: dict) -> None:
    platform = world["platform"]
    url = _stub(platform).ListDeployments(pb.ListDeploymentsRequest(), metadata=_md()).deployments[0].gateway_url
    ca = str(ensure_local_pki(platform.config.pki_dir).ca.cert)
    with httpx.Client(verify=ssl.create_default_context(cafile=ca), timeout=30) as anonymous:
        assert _chat(anonymous, url).status_code == 401
        forged = anonymous.post(url + "/v1/chat/completions", headers={"authorization": "Bearer a.b.c"},
                                json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]})
        assert forged.status_code == 401
    with _client(platform, "mallory", tenant="globex") as other:
        refused = _chat(other, url)
        assert refused.status_code == 404 and "does not exist" in refused.json()["error"]["message"]
        assert other.get(url + "/v1/models").json()["data"] == []
    with pytest.raises(grpc.RpcError) as lineage:  # another tenant cannot ask who answered acme's requests
        _stub(platform).GetServedRequest(pb.GetServedRequestRequest(request_id="0" * 32),
                                         metadata=_md("mallory", ENGINEER, "globex"))
    assert lineage.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_endpoint_serves_one_environment_from_a_known_list(world: dict) -> None:
    platform = world["platform"]
    for fields, code, words in (({"endpoint_name": "bot-staging", "environment": "production"},
                                 grpc.StatusCode.FAILED_PRECONDITION, "serves environment 'staging'"),
                                ({"environment": "prod"}, grpc.StatusCode.INVALID_ARGUMENT, "not one this platform")):
        with pytest.raises(grpc.RpcError) as refused:
            _deploy(platform, world["versions"][2], **fields)
        assert refused.value.code() == code and words in refused.value.details()


def test_production_needs_another_approver_then_flips_under_load_and_rolls_back(world: dict) -> None:
    platform = world["platform"]
    stub = _stub(platform)
    first = _deploy(platform, world["versions"][1], environment="production")
    stub.ApproveDeployment(pb.ApproveDeploymentRequest(deployment_id=first.deployment_id),
                           metadata=_md("carol", APPROVER))
    assert _wait_state(platform, first.deployment_id, S.DEPLOYMENT_STATE_VERIFIED,
                       S.DEPLOYMENT_STATE_FAILED).state == S.DEPLOYMENT_STATE_VERIFIED
    with pytest.raises(grpc.RpcError) as sneaky:  # a staging deployment never takes a production endpoint
        _deploy(platform, world["versions"][2], endpoint_name="bot")
    assert sneaky.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    request = _deploy(platform, world["versions"][2], "bob", APPROVER, environment="production",
                      traffic_switch=pb.TrafficSwitch(drain_seconds=5))
    assert request.state == S.DEPLOYMENT_STATE_REQUESTED
    for actor, roles, code in (("alice", ENGINEER, grpc.StatusCode.PERMISSION_DENIED),   # no approver role
                               ("bob", APPROVER, grpc.StatusCode.PERMISSION_DENIED)):    # the requester himself
        with pytest.raises(grpc.RpcError) as refused:
            stub.ApproveDeployment(pb.ApproveDeploymentRequest(deployment_id=request.deployment_id),
                                   metadata=_md(actor, roles))
        assert refused.value.code() == code
    assert stub.GetDeployment(pb.GetDeploymentRequest(deployment_id=request.deployment_id),
                              metadata=_md()).deployment.state == S.DEPLOYMENT_STATE_REQUESTED
    url = request.gateway_url
    failures: list[str] = []
    seen: set[str] = set()
    answers: list[tuple[float, str]] = []   # (when the request was sent, the version that answered)
    stop = threading.Event()

    def client_loop(i: int) -> None:
        with _client(platform, f"user-{i}") as client:
            while not stop.is_set():
                try:
                    sent = time.monotonic()
                    response = _chat(client, url, "bot", stream=i % 2 == 0)
                    answers.append((sent, response.headers.get("x-privtune-model-version", "")))
                    if response.status_code != 200 or (i % 2 == 0 and "[DONE]" not in response.text):
                        failures.append(f"{response.status_code} {response.text[:200]}")
                    seen.add(response.headers.get("x-privtune-model-version", ""))
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    clients = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for t in clients:
        t.start()
    try:
        approved = stub.ApproveDeployment(pb.ApproveDeploymentRequest(deployment_id=request.deployment_id),
                                          metadata=_md("carol", APPROVER)).deployment
        assert approved.approver == "carol"
        done = _wait_state(platform, request.deployment_id, S.DEPLOYMENT_STATE_VERIFIED, S.DEPLOYMENT_STATE_FAILED,
                           S.DEPLOYMENT_STATE_ROLLED_BACK)
        assert done.state == S.DEPLOYMENT_STATE_VERIFIED, done.reason
        assert done.previous_model_version_id == "bot/v1" and done.weight_percent == 100
        wait_until(lambda: "bot/v2" in seen, 30, "answers from bot/v2")
        back = stub.RollbackDeployment(pb.RollbackDeploymentRequest(deployment_id=request.deployment_id,
                                                                    reason="support saw odd answers"),
                                       metadata=_md()).deployment
        assert back.state == S.DEPLOYMENT_STATE_ROLLED_BACK and back.rollback_trigger == "manual"
        rolled_back_at = time.monotonic()
        wait_until(lambda: sum(1 for sent, _ in answers if sent > rolled_back_at) >= 8, 30, "answers after it")
    finally:
        stop.set()
        for t in clients:
            t.join()
    assert failures == []
    assert {version for sent, version in answers if sent > rolled_back_at} == {"bot/v1"}  # requests sent earlier
    # may still finish on bot/v2: a rollback drains, it never cuts
    wait_until(lambda: _alias(platform, "bot@production") == "bot/v1", 30, "production alias back on bot/v1")
    history = reg_grpc.ModelRegistryServiceStub(_channel(platform)).ListAliasHistory(
        reg.ListAliasHistoryRequest(model_name="bot", alias="production"), metadata=_md())
    moves = [(c.model_version_id, c.reason) for c in history.changes]
    assert [m[0] for m in moves] == ["bot/v1", "bot/v2", "bot/v1"] and "manual rollback" in moves[-1][1]
    audit = audit_grpc.AuditServiceStub(_channel(platform))
    found: list = []

    def audited() -> bool:
        found[:] = audit.SearchAuditRecords(audit_pb.SearchAuditRecordsRequest(
            resource=f"deployment/{request.deployment_id}", kinds=["deployment."]),
            metadata=_md("auditor", ("auditor",))).records
        return any(r.kind == "deployment.rolled_back" for r in found)

    wait_until(audited, 60, "the flip and the rollback in the audit log")
    kinds = [r.kind for r in found]
    assert kinds.index("deployment.approved") < kinds.index("deployment.traffic_flipped") < \
        kinds.index("deployment.rolled_back")
    assert {r.actor for r in found if r.kind == "deployment.rolled_back"} == {"alice"}


def test_a_tampered_adapter_and_a_failed_evaluation_never_serve(world: dict) -> None:
    platform = world["platform"]
    tampered = register_adapter(platform, world["root"], "bot", 3, seed=3, sha256="0" * 64)
    failed = _wait_state(platform, _deploy(platform, tampered).deployment_id, S.DEPLOYMENT_STATE_FAILED,
                         S.DEPLOYMENT_STATE_VERIFIED)
    assert failed.state == S.DEPLOYMENT_STATE_FAILED and failed.error_code == "artifact_mismatch", failed.reason
    gated = register_adapter(platform, world["root"], "bot", 4, seed=4, suite_id="suite-" + "a" * 20)
    # the registration's own evaluation (the real trigger) fails: its suite does not exist
    wait_until(lambda: _catalog_eval(platform, gated) != "", 60, "the registration's evaluation in deploy's catalog")
    with pytest.raises(grpc.RpcError) as refused:
        _deploy(platform, gated)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "the evaluation failed" in refused.value.details() and "not found" in refused.value.details()
    eval_id = record_evaluation(platform, gated, False)
    wait_until(lambda: _catalog_eval(platform, gated) == eval_id, 30, "the evaluation in deploy's catalog")
    with pytest.raises(grpc.RpcError) as failed_gates:
        _deploy(platform, gated)
    assert failed_gates.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "domain_min_delta" in failed_gates.value.details()
    with _client(platform) as client:  # traffic never left bot/v1
        url = _stub(platform).ListDeployments(pb.ListDeploymentsRequest(), metadata=_md()).deployments[0].gateway_url
        assert _chat(client, url).headers["x-privtune-model-version"] == "bot/v1"


def _catalog_eval(platform: Platform, version: str) -> str:
    from services.deploy.catalog import find_version

    found = find_version(platform.engine, TENANT, version, 0)  # type: ignore[arg-type]
    return found.eval_id if found is not None and found.eval_done else ""


def test_a_slow_candidate_is_rolled_back_automatically_naming_the_gate(world: dict) -> None:
    platform = world["platform"]
    gates = events_pb2.TrafficGateLimits(p95_latency_ms=0.001, min_requests=5)  # an SLO nothing can meet
    deployment = _deploy(platform, world["versions"][2], rollback_on_regression=True, metric_gates=gates,
                         verify_seconds=120)
    _wait_state(platform, deployment.deployment_id, S.DEPLOYMENT_STATE_TRAFFIC_FLIPPED,
                S.DEPLOYMENT_STATE_ROLLED_BACK, S.DEPLOYMENT_STATE_FAILED)
    with _client(platform) as client:
        for _ in range(12):
            assert _chat(client, deployment.gateway_url).status_code == 200
    back = _wait_state(platform, deployment.deployment_id, S.DEPLOYMENT_STATE_ROLLED_BACK, S.DEPLOYMENT_STATE_FAILED)
    assert back.state == S.DEPLOYMENT_STATE_ROLLED_BACK and back.rollback_trigger == "p95_latency", back.reason
    assert "exceeds the SLO" in back.reason
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        events = eventstore.load_stream(conn, TENANT, deployment.deployment_id)
    rolled = [e.rolled_back for e in events if e.WhichOneof("payload") == "rolled_back"]
    assert rolled[0].automatic and rolled[0].model_version_id == "bot/v1"
    with _client(platform) as client:
        assert _chat(client, deployment.gateway_url).headers["x-privtune-model-version"] == "bot/v1"


def test_shadow_answers_are_judged_and_never_reach_users(world: dict) -> None:
    platform = world["platform"]
    gates = events_pb2.TrafficGateLimits(min_requests=3, max_leaking_answers=1000, max_toxic_rate=1.0,
                                         max_error_rate=0.0)
    deployment = _deploy(platform, world["versions"][2], strategy=events_pb2.ROLLOUT_STRATEGY_SHADOW,
                         metric_gates=gates, verify_seconds=6)
    _wait_state(platform, deployment.deployment_id, S.DEPLOYMENT_STATE_SHADOWING, S.DEPLOYMENT_STATE_FAILED)
    answered: set[tuple[str, int]] = set()  # (the version that answered, the gateway's routing version then)
    with _client(platform) as client:
        while _stub(platform).GetDeployment(pb.GetDeploymentRequest(deployment_id=deployment.deployment_id),
                                            metadata=_md()).deployment.state == S.DEPLOYMENT_STATE_SHADOWING:
            headers = _chat(client, deployment.gateway_url).headers
            answered.add((headers["x-privtune-model-version"], int(headers["x-privtune-routing-version"])))
    done = _wait_state(platform, deployment.deployment_id, S.DEPLOYMENT_STATE_VERIFIED, S.DEPLOYMENT_STATE_FAILED)
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        events = eventstore.load_stream(conn, TENANT, deployment.deployment_id)
    # the gateway moves traffic, then the flip is recorded: an answer in between comes from the candidate
    # while the deployment still reads SHADOWING. Before the flip's routing version, only the serving
    # version answered: the candidate's shadow answers were recorded, never returned.
    flipped = [e.traffic_flipped.routing_version for e in events if e.WhichOneof("payload") == "traffic_flipped"]
    assert len(flipped) == 1
    before = {version for version, routing in answered if routing < flipped[0]}
    assert before == {"bot/v1"}, sorted(answered)
    assert {version for version, routing in answered if routing >= flipped[0]} <= {"bot/v2"}
    judged = [e.shadow_judged for e in events if e.WhichOneof("payload") == "shadow_judged"]
    assert len(judged) == 1 and judged[0].requests >= 3 and judged[0].passed, judged[0].reason
    assert done.state == S.DEPLOYMENT_STATE_VERIFIED, done.reason


def test_a_canary_moves_traffic_in_its_steps_then_is_verified(world: dict) -> None:
    platform = world["platform"]
    deployment = _deploy(platform, world["versions"][1], strategy=events_pb2.ROLLOUT_STRATEGY_CANARY,
                         canary_steps_percent=[50, 100], verify_seconds=4)
    done = _wait_state(platform, deployment.deployment_id, S.DEPLOYMENT_STATE_VERIFIED, S.DEPLOYMENT_STATE_FAILED,
                       S.DEPLOYMENT_STATE_ROLLED_BACK)
    assert done.state == S.DEPLOYMENT_STATE_VERIFIED, done.reason
    with platform.engine.connect() as conn:  # type: ignore[union-attr]
        events = eventstore.load_stream(conn, TENANT, deployment.deployment_id)
    flips = [e.traffic_flipped for e in events if e.WhichOneof("payload") == "traffic_flipped"]
    assert [(f.weight_percent, f.previous_model_version_id) for f in flips] == [(50, "bot/v2"), (100, "bot/v2")]
    with pytest.raises(grpc.RpcError) as busy:  # the endpoint's previous pool was replaced: nothing to go back to
        _stub(platform).RollbackDeployment(pb.RollbackDeploymentRequest(deployment_id=_first_of(platform)),
                                           metadata=_md())
    assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _first_of(platform: Platform) -> str:
    return _stub(platform).ListDeployments(pb.ListDeploymentsRequest(), metadata=_md()).deployments[0].deployment_id


def test_a_restarted_deploy_service_serves_the_endpoint_again(world: dict) -> None:
    platform: Platform = world["platform"]
    platform.stop()
    world["platform"] = platform = start_platform(world["root"] / "data")
    url = _stub(platform).ListDeployments(pb.ListDeploymentsRequest(), metadata=_md()).deployments[0].gateway_url
    with _client(platform) as client:
        for endpoint in ("bot-staging", "bot"):  # restored one after the other
            wait_until(lambda e=endpoint: _chat(client, url, e).status_code == 200, 120, f"{endpoint} restored")
        assert _chat(client, url).headers["x-privtune-model-version"] == "bot/v1"
        assert _chat(client, url, "bot").headers["x-privtune-model-version"] == "bot/v1"  # production, rolled back
